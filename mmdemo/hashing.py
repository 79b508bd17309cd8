"""Content hashes: what names a file by its bytes (caches, indexes, model ids)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hash(path: str | Path, length: int | None = None) -> str:
    """The sha256 of a file's bytes, read in chunks (hex; its first ``length`` characters if given)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length] if length else h.hexdigest()
