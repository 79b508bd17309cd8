"""Embedding index: add, search, save, load.

Search is exact for small galleries and approximate (HNSW, or IVF-PQ with exact
re-ranking: ``ann.py``) for large ones, chosen by size and tuned for a target recall;
the kind, its parameters and the recall measured on held-out items travel in the file.

Saved as one ``.npz``-style file (``npzfile.py``: stored members, no pickles) written
atomically, so a crash mid-save leaves the previous index intact. Loading memory-maps
the embeddings and the items, so opening a million-item index reads almost nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.index import ann as ann_mod
from mmdemo.index import npzfile
from mmdemo.index.ann import exact_topk

FORMAT = "mmdemo-index-2"
OLD_FORMAT = "mmdemo-index-1"  # embeddings + a JSON meta holding the items; still read
MODALITIES = ("image", "audio")
EXACT_RECORD = {"kind": "exact", "params": {}, "recall_at_10": 1.0, "recall_queries": 0}


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _from_json_array(arr: np.ndarray):
    return json.loads(np.asarray(arr, np.uint8).tobytes().decode("utf-8"))


@dataclass
class SearchHit:
    index: int
    score: float
    item: dict


class LazyItems(Sequence):
    """Items read one at a time from a memory-mapped JSON-lines member: a million
    items cost nothing until a search result asks for a few of them."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self._data, self._offsets = data, offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        return json.loads(bytes(self._data[start:end]).decode("utf-8"))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))


@dataclass
class EmbeddingIndex:
    """Normalised embeddings [N, D] of items (dicts with at least ``name``) from one model."""

    model_id: str
    dim: int
    embeddings: np.ndarray = field(default=None)  # type: ignore[assignment]
    items: Sequence[dict] = field(default_factory=list)
    exact_limit: int | None = None  # None: by size in bytes (ann.EXACT_MAX_BYTES)
    modality: str = "image"
    hnsw_limit: int | None = None  # None: by size in bytes (ann.HNSW_MAX_BYTES)
    target_recall: float = ann_mod.TARGET_RECALL
    _ann: object = field(default=None, repr=False)
    _record: dict | None = field(default=None, repr=False)  # how the search was built and how well it did
    _path: Path | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # one build at a time

    def __post_init__(self):
        if self.embeddings is None:
            self.embeddings = np.zeros((0, self.dim), np.float32)
        if self.modality not in MODALITIES:
            raise MMDemoError("index_invalid", f"An index holds images or sounds, not {self.modality!r}.")

    def __len__(self) -> int:
        return len(self.items)

    def add(self, embeddings: np.ndarray, items: Sequence[dict]) -> None:
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or len(embeddings) != len(items):
            raise MMDemoError("index_shape_mismatch", f"Embeddings of shape {embeddings.shape} don't fit this index "
                                                      f"({self.dim}-d, {len(items)} items).")
        self.embeddings = np.concatenate([np.asarray(self.embeddings, np.float32), embeddings])
        self.items = [dict(i) for i in self.items] + [dict(i) for i in items]
        self._ann, self._record, self._path = None, None, None  # rebuilt on the next search or save

    @property
    def kind(self) -> str:
        """The search this index uses: the one recorded when it was built, else the one its size calls for."""
        if self._record is not None:
            return self._record["kind"]
        return ann_mod.kind_for(len(self), self.dim, self.exact_limit, self.hnsw_limit)

    @property
    def uses_faiss(self) -> bool:
        return self.kind != "exact"

    def prepare(self) -> dict:
        """Build (and tune) the approximate search if the size calls for one; returns its record."""
        with self._lock:
            return self._prepare()

    def _prepare(self) -> dict:
        if self._record is None:
            if self.kind == "exact":
                self._record = dict(EXACT_RECORD)
            else:
                ann, record = ann_mod.build(self.embeddings, self.kind, target=self.target_recall)
                if record["kind"] == "hnsw" and record["recall_at_10"] < self.target_recall:
                    # Vectors with no structure to exploit (uniform noise): even the most thorough
                    # graph search misses the target and is slower than a scan (bench_ann's uniform
                    # row: recall 0.75 at 1.2x the scan's time). Up to HNSW_MAX_BYTES a scan is fast
                    # enough: search exactly, and keep what was measured.
                    ann, record = None, {**EXACT_RECORD, "fallback_from": {k: record[k] for k in (
                        "kind", "params", "recall_at_10", "recall_queries", "target_recall")}}
                self._ann, self._record = ann, record
        return self._record

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """Top-k by inner product (= cosine, embeddings are normalised) for each query."""
        if len(self) == 0:
            raise MMDemoError("index_empty", "The index is empty; add some items first.")
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if q.shape[1] != self.dim:
            raise MMDemoError("query_dim_mismatch",
                              f"Query has {q.shape[1]} dimensions; this index holds {self.dim}-d embeddings "
                              f"from {self.model_id!r}. Rebuild the index with the current model.")
        k = max(1, min(int(k), len(self)))
        self.prepare()
        if self._ann is None:
            scores, idx = exact_topk(self.embeddings, q, k)
        else:
            scores, idx = self._ann.search(np.ascontiguousarray(q), k, self.embeddings)
        return [[SearchHit(int(i), float(s), self.items[int(i)]) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, idx)]

    def info(self) -> dict:
        """What a user is told about the index: size, kind, parameters, recorded recall
        (building the search first if it has not been built)."""
        record = self.prepare()
        return {"items": len(self), "dim": self.dim, "model_id": self.model_id, "modality": self.modality,
                "kind": record["kind"], "params": record["params"],
                "recall_at_10": record["recall_at_10"], "recall_queries": record["recall_queries"],
                "fallback_from": record.get("fallback_from"),
                "file_bytes": self._path.stat().st_size if self._path and self._path.exists() else None}

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index (building its search first) to one file, atomically."""
        path = Path(path)
        record = self.prepare()
        lines = [json.dumps(it, ensure_ascii=False).encode("utf-8") for it in self.items]
        offsets = np.zeros(len(lines) + 1, np.int64)
        np.cumsum([len(b) for b in lines], out=offsets[1:])
        meta = {"format": FORMAT, "model_id": self.model_id, "dim": self.dim, "modality": self.modality,
                "count": len(self), "search": record}
        blobs = {"items.jsonl": lambda f: [f.write(b) for b in lines]}
        if self._ann is not None:
            blobs["ann.faiss"] = lambda f: ann_mod.write(self._ann, f)
        npzfile.write(path, {"meta": _json_array(meta), "embeddings": np.asarray(self.embeddings, np.float32),
                             "item_offsets": offsets}, blobs)
        self._path = path
        return path

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> "EmbeddingIndex":
        """Open a saved index; with ``mmap`` the embeddings and items stay on disk until read."""
        path = Path(path)
        if not path.is_file():
            raise MMDemoError("index_not_found", f"Index file not found: {path}")
        try:
            with npzfile.IndexFile(path) as f:
                index = cls._read(f, mmap)
        except MMDemoError:
            raise
        except Exception as exc:
            raise MMDemoError("index_invalid",
                              f"{path.name} is not an mmdemo index, or it is damaged ({type(exc).__name__}). "
                              "Build it again with `python -m mmdemo index build`.") from None
        index._path = path
        return index

    @classmethod
    def _read(cls, f: npzfile.IndexFile, mmap: bool) -> "EmbeddingIndex":
        meta = _from_json_array(f.read_array("meta"))
        if isinstance(meta, dict) and meta.get("format") == OLD_FORMAT:
            return cls._read_old(f, meta)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not an index")
        read = f.mmap_array if mmap else f.read_array
        emb, offsets, data = read("embeddings"), read("item_offsets"), f.mmap_bytes("items.jsonl")
        items = LazyItems(data, offsets) if mmap else list(LazyItems(np.asarray(data), offsets))
        count, dim, record = int(meta["count"]), int(meta["dim"]), meta["search"]
        if emb.dtype != np.float32 or emb.shape != (count, dim) or len(items) != count:
            raise ValueError("sizes disagree")
        index = cls(model_id=meta["model_id"], dim=dim, embeddings=emb, items=items,
                    modality=meta.get("modality", "image"))
        if record["kind"] != "exact":
            with f.open_member("ann.faiss") as stream:
                index._ann = ann_mod.read(record["kind"], record["params"], stream)
            if index._ann.index.ntotal != count or index._ann.index.d != dim:
                raise ValueError("the search structure does not match the vectors")
        index._record = record
        return index

    @classmethod
    def _read_old(cls, f: npzfile.IndexFile, meta: dict) -> "EmbeddingIndex":
        """A file of the previous version: searched exactly, as it was (no tuned search is
        recorded in it; building one would take minutes at start-up)."""
        emb = np.asarray(f.read_array("embeddings"), np.float32)
        if len(meta.get("items", [])) != len(emb):
            raise ValueError("sizes disagree")
        return cls(model_id=meta["model_id"], dim=int(meta["dim"]), embeddings=emb, items=list(meta["items"]),
                   exact_limit=len(emb))
