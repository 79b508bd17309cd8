"""Approximate search for large indexes: which kind fits a size, how it is built,
tuned for a target recall and searched.

- **exact** below ``EXACT_MAX_BYTES`` of vectors: a scan that is already fast.
- **hnsw** (faiss ``IndexHNSWFlat``, M 32) up to ``HNSW_MAX_BYTES``: a graph of the
  vectors, about 1.13x their memory, a millisecond per query at a million.
- **ivfpq** above that: k-means cells of 64-byte product-quantised codes (0.04x the
  vectors' memory), the best candidates re-ranked by exact inner products read from the
  vectors, which stay on disk (memory-mapped). This is faiss's ``IndexRefine`` done
  over the memory map, so the re-ranking costs no memory.

Parameters are tuned as autofaiss does: a sample of items is held out of the build, the
cheapest search setting whose recall@10 on them reaches the target is kept, then the
held-out items are added. The recall measured is recorded in the index file.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import numpy as np

# Thresholds measured by bench/bench_ann.py on 2 cores (the closing note of issue 16):
# an exact single-query scan of 64 MiB of vectors takes ~3 ms, below what a person
# notices, and it needs no build; HNSW keeps the raw vectors in memory, so past 4 GiB
# of them the compressed IVF-PQ takes over.
EXACT_MAX_BYTES = 64 * 2**20
HNSW_MAX_BYTES = 4 * 2**30
TARGET_RECALL = 0.95
RECALL_K = 10
TUNE_QUERIES = 500
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
IVF_NPROBE = (4, 8, 16, 32, 64, 128, 256, 512)
IVF_K_FACTOR = (4, 10, 25, 50)
IVF_MIN_ITEMS = 4_096
_ADD_CHUNK = 65_536  # rows copied out of a memory map at a time


def kind_for(n: int, dim: int, exact_limit: int | None = None, hnsw_limit: int | None = None) -> str:
    exact_limit = EXACT_MAX_BYTES // (4 * dim) if exact_limit is None else exact_limit
    hnsw_limit = HNSW_MAX_BYTES // (4 * dim) if hnsw_limit is None else hnsw_limit
    if n <= max(exact_limit, 1):
        return "exact"
    # Product quantisation trains 256 centroids per code byte: it needs thousands of points.
    return "hnsw" if n <= hnsw_limit or n < IVF_MIN_ITEMS else "ivfpq"


def exact_topk(embeddings: np.ndarray, queries: np.ndarray, k: int,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products, best first; rows in ``exclude`` never appear. Scans the
    vectors in chunks so a batch of queries over a million items stays small in memory."""
    n = len(embeddings)
    k = min(k, n - (0 if exclude is None else len(exclude)))
    chunk = max(65_536, 2**28 // (4 * max(1, len(queries))))
    best_s, best_i = [], []
    for start in range(0, n, chunk):
        sims = queries @ np.asarray(embeddings[start:start + chunk], np.float32).T
        if exclude is not None:
            inside = exclude[(exclude >= start) & (exclude < start + chunk)] - start
            sims[:, inside] = -np.inf
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < sims.shape[1] else \
            np.broadcast_to(np.arange(sims.shape[1]), (len(sims), sims.shape[1]))
        best_s.append(np.take_along_axis(sims, part, axis=1))
        best_i.append(part + start)
    scores, ids = np.concatenate(best_s, axis=1), np.concatenate(best_i, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def recall_at(found_scores: np.ndarray, truth_scores: np.ndarray) -> float:
    """Recall@k by score: a result counts when it is at least as near as the true k-th
    neighbour, so among exact duplicates (a photo saved twice) any copy is right."""
    k = truth_scores.shape[1]
    kth = truth_scores[:, -1:] - 1e-6
    return float(np.mean(np.sum(found_scores[:, :k] >= kth, axis=1) / k))


@contextlib.contextmanager
def _threads_for(n_queries: int) -> Iterator[None]:
    """One faiss thread for a few queries: with the other core busy (a server answering
    someone else), waking a second thread costs more than the search (0.4 ms became 5 ms
    for one HNSW query on 2 cores). OpenMP's setting is per calling thread, so a
    concurrent build elsewhere keeps its threads."""
    import faiss

    if n_queries > 8:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class _Faiss:
    """What both kinds share: a faiss index holding rows under their own numbers."""

    def __init__(self, index):
        self.index = index

    @classmethod
    def _filled(cls, index, embeddings: np.ndarray, rows: np.ndarray):
        ann = cls(index)
        ann.add(embeddings, rows)
        return ann

    def add(self, embeddings: np.ndarray, rows: np.ndarray) -> None:
        """Add ``rows`` under their own numbers, copied out of a memory map a chunk at a time."""
        for start in range(0, len(rows), _ADD_CHUNK):
            ids = rows[start:start + _ADD_CHUNK]
            self.index.add_with_ids(np.ascontiguousarray(embeddings[ids], np.float32), ids.astype(np.int64))


class Hnsw(_Faiss):
    """faiss ``IndexHNSWFlat`` (inner product) under an id map; ``efSearch`` tuned."""

    kind = "hnsw"

    def __init__(self, index, ef_search: int = 64):
        super().__init__(index)
        self.ef_search = ef_search

    @classmethod
    def create(cls, embeddings: np.ndarray, rows: np.ndarray) -> "Hnsw":
        import faiss

        graph = faiss.IndexHNSWFlat(embeddings.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return cls._filled(faiss.IndexIDMap(graph), embeddings, rows)

    @property
    def params(self) -> dict:
        return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": self.ef_search}

    def use(self, params: dict) -> None:
        self.ef_search = int(params["efSearch"])

    def settings(self, k: int) -> list[dict]:
        return [{"efSearch": ef} for ef in HNSW_EF_SEARCH if ef >= k]

    def search(self, queries: np.ndarray, k: int, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        with _threads_for(len(queries)):
            return self.index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)))


class IvfPq(_Faiss):
    """faiss ``IndexIVFPQ`` (inner product); ``nprobe`` cells scanned, ``k_factor * k``
    candidates re-ranked exactly from the (memory-mapped) vectors."""

    kind = "ivfpq"

    def __init__(self, index, nprobe: int = 32, k_factor: int = 10):
        super().__init__(index)
        self.nprobe, self.k_factor = nprobe, k_factor

    @staticmethod
    def shape_for(n: int, dim: int) -> tuple[int, int]:
        """(cells, sub-quantisers): ~4 sqrt(n) cells of >= 39 points (faiss's minimum per
        centroid), a power of two; 8 dimensions per one-byte code (64 bytes at 512-d)."""
        nlist = 2 ** max(0, round(math.log2(max(1.0, 4 * math.sqrt(n)))))
        while nlist > 1 and nlist * 39 > n:
            nlist //= 2
        m = max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)
        return nlist, m

    @classmethod
    def create(cls, embeddings: np.ndarray, rows: np.ndarray, seed: int = 0) -> "IvfPq":
        import faiss

        n, dim = len(rows), embeddings.shape[1]
        nlist, m = cls.shape_for(n, dim)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # k-means of the cells: 10 rounds are within a percent of 25 here, at 40% of the time
        index.cp.seed = index.pq.cp.seed = seed
        # 256 code words from ~10k rows is enough (faiss warns below 39 rows per centroid).
        index.pq.cp.min_points_per_centroid = 32
        sample = np.sort(np.random.default_rng(seed).choice(rows, size=min(n, max(64 * nlist, 256 * 64)),
                                                            replace=False))
        index.train(np.ascontiguousarray(embeddings[sample], np.float32))
        return cls._filled(index, embeddings, rows)

    @property
    def params(self) -> dict:
        return {"nlist": int(self.index.nlist), "pq_bytes": int(self.index.pq.M), "nprobe": self.nprobe,
                "k_factor": self.k_factor}

    def use(self, params: dict) -> None:
        self.nprobe, self.k_factor = int(params["nprobe"]), int(params["k_factor"])

    def settings(self, k: int) -> list[dict]:
        """Cheapest first: codes scanned (nprobe cells of n/nlist codes, m lookups each)
        plus rows re-ranked (k * k_factor random reads of d floats, ~4x a sequential op)."""
        n, nlist, m, d = self.index.ntotal, self.index.nlist, self.index.pq.M, self.index.d
        grid = [{"nprobe": p, "k_factor": f} for p in IVF_NPROBE if p <= nlist for f in IVF_K_FACTOR]
        return sorted(grid, key=lambda s: s["nprobe"] * n / nlist * m + k * s["k_factor"] * d * 4)

    def search(self, queries: np.ndarray, k: int, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        kk = min(k * self.k_factor, self.index.ntotal)
        with _threads_for(len(queries)):
            _, cand = self.index.search(queries, kk, params=faiss.SearchParametersIVF(nprobe=self.nprobe))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for r, (q, row) in enumerate(zip(queries, cand)):
            row = np.unique(row[row >= 0])  # sorted: memory-map reads in file order
            exact = np.asarray(embeddings[row], np.float32) @ q
            top = np.argsort(-exact, kind="stable")[:k]
            scores[r, :len(top)], ids[r, :len(top)] = exact[top], row[top]
        return scores, ids


ANN_KINDS = {"hnsw": Hnsw, "ivfpq": IvfPq}


def build(embeddings: np.ndarray, kind: str, *, target: float = TARGET_RECALL, seed: int = 0) -> tuple[object, dict]:
    """Build ``kind`` over all rows, tuned on held-out rows; returns (ann, record)."""
    started = time.perf_counter()
    n = len(embeddings)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(n, size=min(TUNE_QUERIES, max(1, n // 10)), replace=False))
    rest = np.setdiff1d(np.arange(n), held)
    ann = ANN_KINDS[kind].create(embeddings, rest)
    queries = np.ascontiguousarray(embeddings[held], np.float32)
    k = min(RECALL_K, len(rest))
    truth = exact_topk(embeddings, queries, k, exclude=held)[0]
    tried = []
    for setting in ann.settings(k):
        ann.use(setting)
        tried.append({**setting, "recall_at_10": round(recall_at(ann.search(queries, k, embeddings)[0], truth), 4)})
        if tried[-1]["recall_at_10"] >= target:
            break  # the cheapest setting that reaches the target; else the most thorough one tried
    ann.use(tried[-1])
    ann.add(embeddings, held)
    record = {"kind": kind, "params": ann.params, "recall_at_10": tried[-1]["recall_at_10"],
              "recall_queries": len(held), "target_recall": target, "tried": tried,
              "build_seconds": round(time.perf_counter() - started, 2)}
    return ann, record


def write(ann, stream) -> None:
    import faiss

    faiss.write_index(ann.index, faiss.PyCallbackIOWriter(stream.write))


def read(kind: str, params: dict, stream):
    import faiss

    ann = ANN_KINDS[kind](faiss.read_index(faiss.PyCallbackIOReader(stream.read)))
    ann.use(params)
    return ann
