"""(content hash, model id) -> embedding, on disk, so unchanged files are never re-encoded."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmdemo.atomic import atomic_write_with
from mmdemo.hashing import content_hash
from mmdemo.index.store import _from_json_array, _json_array


def _atomic_savez(path: Path, **arrays) -> None:
    atomic_write_with(path, lambda f: np.savez(f, **arrays))


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
