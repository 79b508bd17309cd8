"""Embedding indexes: exact and approximate search (``store``, ``ann``), the file they
are saved in (``npzfile``) and the cache of embeddings by file content (``cache``)."""

from mmdemo.index.ann import exact_topk
from mmdemo.index.cache import EmbeddingCache
from mmdemo.index.store import EmbeddingIndex, SearchHit

__all__ = ["EmbeddingCache", "EmbeddingIndex", "SearchHit", "exact_topk"]
