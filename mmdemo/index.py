"""Embedding index: add, search, save, load; exact numpy search for small galleries,
FAISS (approximate, IVF) for large ones.

Saved as one ``.npz`` file (no pickles: loaded with ``allow_pickle=False``) written
atomically, so a crash mid-save leaves the previous index intact. An embedding
cache keyed by (content hash, model id) makes re-indexing unchanged files nearly free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmdemo.atomic import atomic_write_with
from mmdemo.errors import MMDemoError
from mmdemo.hashing import content_hash

# Below this many vectors an exact scan is fast enough (a 512-d scan of 50k vectors
# reads ~100 MB, a few ms) and FAISS's approximation would buy nothing.
EXACT_LIMIT = 50_000
FORMAT = "mmdemo-index-1"


def _atomic_savez(path: Path, **arrays) -> None:
    atomic_write_with(path, lambda f: np.savez(f, **arrays))


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _from_json_array(arr: np.ndarray):
    return json.loads(arr.tobytes().decode("utf-8"))


@dataclass
class SearchHit:
    index: int
    score: float
    item: dict


@dataclass
class EmbeddingIndex:
    """Normalised embeddings [N, D] of items (dicts with at least ``name``) from one model."""

    model_id: str
    dim: int
    embeddings: np.ndarray = field(default=None)  # type: ignore[assignment]
    items: list[dict] = field(default_factory=list)
    exact_limit: int = EXACT_LIMIT
    _faiss: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.embeddings is None:
            self.embeddings = np.zeros((0, self.dim), np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, embeddings: np.ndarray, items: Sequence[dict]) -> None:
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or len(embeddings) != len(items):
            raise MMDemoError("index_shape_mismatch", f"Embeddings of shape {embeddings.shape} don't fit this index "
                                                      f"({self.dim}-d, {len(items)} items).")
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.items.extend(dict(i) for i in items)
        self._faiss = None  # rebuilt lazily on the next large search

    @property
    def uses_faiss(self) -> bool:
        return len(self) > self.exact_limit

    def search(self, queries: np.ndarray, k: int = 10, nprobe: int = 32) -> list[list[SearchHit]]:
        """Top-k by inner product (= cosine, embeddings are normalised) for each query."""
        if len(self) == 0:
            raise MMDemoError("index_empty", "The index is empty; add some items first.")
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if q.shape[1] != self.dim:
            raise MMDemoError("query_dim_mismatch",
                              f"Query has {q.shape[1]} dimensions; this index holds {self.dim}-d embeddings "
                              f"from {self.model_id!r}. Rebuild the index with the current model.")
        k = max(1, min(int(k), len(self)))
        if self.uses_faiss:
            scores, idx = self._faiss_index(nprobe).search(q, k)
        else:
            scores, idx = exact_topk(self.embeddings, q, k)
        return [[SearchHit(int(i), float(s), self.items[int(i)]) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, idx)]

    def _faiss_index(self, nprobe: int):
        if self._faiss is None:
            self._faiss = build_faiss_ivf(self.embeddings)
        self._faiss.nprobe = nprobe
        return self._faiss

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = {"format": FORMAT, "model_id": self.model_id, "dim": self.dim, "items": self.items}
        _atomic_savez(path, embeddings=self.embeddings, meta=_json_array(meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingIndex":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                emb = np.asarray(z["embeddings"], np.float32)
                meta = _from_json_array(z["meta"])
        except FileNotFoundError:
            raise MMDemoError("index_not_found", f"Index file not found: {path}") from None
        except Exception as exc:
            raise MMDemoError("index_invalid", f"{path.name} is not an mmdemo index ({type(exc).__name__}).") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or len(meta.get("items", [])) != len(emb):
            raise MMDemoError("index_invalid", f"{path.name} is not an mmdemo index (or it is damaged).")
        return cls(model_id=meta["model_id"], dim=int(meta["dim"]), embeddings=emb, items=list(meta["items"]))


def exact_topk(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ embeddings.T
    if k >= sims.shape[1]:
        idx = np.argsort(-sims, axis=1)
    else:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(sims, idx, axis=1), idx


def build_faiss_ivf(embeddings: np.ndarray, nlist: int | None = None):
    """An inverted-file index (inner product): k-means cells, scan only ``nprobe`` of them."""
    import faiss

    n, d = embeddings.shape
    # ~sqrt(n) cells, each with enough points (>= 39) for k-means to be meaningful.
    nlist = nlist or max(1, min(int(np.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = embeddings[rng.choice(n, size=min(n, nlist * 64), replace=False)]
    index.train(np.ascontiguousarray(sample))
    index.add(np.ascontiguousarray(embeddings))
    return index


class EmbeddingCache:
    """(content hash, model id) -> embedding, on disk, so unchanged files are never re-encoded."""

    def __init__(self, cache_dir: str | Path, model_id: str):
        self.model_id = model_id
        key = content_hash(model_id.encode())[:16]
        self.path = Path(cache_dir) / "embeddings" / f"{key}.npz"
        self._data: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._data = dict(zip(_from_json_array(z["keys"]), np.asarray(z["embeddings"], np.float32)))
            except Exception:
                self._data = {}  # a damaged cache is only a cache: start over

    def get_or_compute(self, hashes: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> tuple[np.ndarray, int]:
        """Embeddings for ``hashes``; ``compute(missing_positions)`` encodes only the new ones.
        Returns (embeddings, number computed)."""
        missing = [i for i, h in enumerate(hashes) if h not in self._data]
        if missing:
            new = compute(missing)
            for i, emb in zip(missing, new):
                self._data[hashes[i]] = np.asarray(emb, np.float32)
            self.save()
        return np.stack([self._data[h] for h in hashes]) if hashes else np.zeros((0, 0), np.float32), len(missing)

    def save(self) -> None:
        keys = list(self._data)
        _atomic_savez(self.path, keys=_json_array(keys),
                      embeddings=np.stack([self._data[k] for k in keys]) if keys else np.zeros((0, 0), np.float32))
