"""Search over large galleries: exact, HNSW and IVF-PQ (re-ranked) on CLIP-like embeddings.

The embeddings are ``clip_like``'s Gaussian mixture fitted to the tiny CLIP's
embeddings of generated scenes (clustered, a shared mean direction, a decaying
spectrum), 512-d; the queries are fresh draws from the same mixture (held out, never
indexed). A row ``tiny_clip`` runs the same on the tiny CLIP's own embeddings of 20k
generated scenes (128-d), and ``uniform`` on uniform random vectors (the worst case,
which the previous benchmark used). At each size:

- **exact**: ``mmdemo.index.exact_topk`` one query at a time, p50, beside the
  memory-bandwidth bound of a full scan (the vectors' bytes / a numpy copy's bytes per
  second measured here): the baseline every other row is a ratio to.
- **hnsw** and **ivfpq**: built and tuned by ``EmbeddingIndex`` itself (held-out items,
  target recall@10 0.95); then one query at a time through ``EmbeddingIndex.search``:
  p50/p95 latency, recall@10 against the exact answer on the held-out queries, build
  seconds, and memory (the search structure's bytes, as written to the index file,
  over the raw vectors' bytes). A short curve of other settings shows the trade-off.
- **opened** (in each kind's row): the index saved, then opened with
  ``EmbeddingIndex.load`` (memory map): seconds, resident memory added by opening, the
  first search, and p50/p95 of searches through the opened file.

    python bench/bench_ann.py [--sizes 10000,32768,100000,1000000] [--queries 1000] [--quick]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import clip_like  # noqa: E402

from mmdemo.index import EmbeddingIndex, exact_topk  # noqa: E402
from mmdemo.index import ann as ann_mod  # noqa: E402

K = 10


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bandwidth_gbs() -> float:
    src = np.ones(512 * 2 ** 20 // 4, np.float32)
    dst = np.empty_like(src)
    best = min(_time(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * src.nbytes / best / 1e9  # bytes read + written per second


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def single_queries(search, queries: np.ndarray) -> tuple[dict, np.ndarray]:
    """Each query alone (as a user's search is): p50/p95 ms and the ids found."""
    search(queries[:1])  # warm-up
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        ids = search(q[None])
        times.append(time.perf_counter() - t)
        found.append(ids)
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p95_ms": round(float(np.percentile(ms, 95)), 4)}, \
        np.array(found)


class _Counter:
    def __init__(self):
        self.n = 0

    def write(self, b) -> int:
        self.n += len(b)
        return len(b)


def structure_bytes(index: EmbeddingIndex) -> int:
    counter = _Counter()
    ann_mod.write(index._ann, counter)
    return counter.n


def index_for(data: np.ndarray, kind: str) -> EmbeddingIndex:
    items = [{"name": f"item-{i}"} for i in range(len(data))]
    n = len(data)
    return EmbeddingIndex("bench", data.shape[1], data, items, exact_limit=n if kind == "exact" else 0,
                          hnsw_limit=n if kind == "hnsw" else 0)


def measure_kind(index: EmbeddingIndex, queries, truth, raw_bytes: int) -> dict:
    t = time.perf_counter()
    record = index.prepare()
    build_s = time.perf_counter() - t
    if index._ann is None:  # the graph missed the target: the index searches exactly (store.prepare)
        lat, found = single_queries(lambda q: [h.score for h in index.search(q, k=K)[0]], queries[:100])
        return {"build_s": round(build_s, 1), "tuned": record, **lat, "queries": 100,
                "recall_at_10": round(ann_mod.recall_at(found, truth[:100]), 4)}
    scores = lambda q: [h.score for h in index.search(q, k=K)[0]]  # noqa: E731
    lat, found = single_queries(scores, queries)
    out = {"build_s": round(build_s, 1), "tuned": record, **lat,
           "recall_at_10": round(ann_mod.recall_at(found, truth), 4),
           "memory_vs_raw": round(structure_bytes(index) / raw_bytes, 3)}
    chosen = dict(index._ann.params)
    curve = []
    settings = index._ann.settings(K)
    for s in settings[:: max(1, len(settings) // 6)]:
        index._ann.use(s)
        lat, found = single_queries(scores, queries[:300])
        curve.append({**s, **lat, "recall_at_10": round(ann_mod.recall_at(found, truth[:300]), 4)})
    index._ann.use(chosen)
    out["curve_300_queries"] = curve
    return out


def measure_open(index: EmbeddingIndex, queries) -> dict:
    """Save ``index``, drop it, open the file again by memory map, and search through it
    (the vectors paged in from the file as the searches touch them)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("MMDEMO_BENCH_TMP")) as tmp:
        path = Path(tmp) / "gallery.npz"
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        del index
        before = rss_mb()
        t = time.perf_counter()
        opened = EmbeddingIndex.load(path, mmap=True)
        open_s = time.perf_counter() - t
        after = rss_mb()
        first = _time(lambda: opened.search(queries[:1], k=K))
        lat, _ = single_queries(lambda q: [h.score for h in opened.search(q, k=K)[0]], queries[:300])
        return {"file_mb": round(path.stat().st_size / 2**20, 1), "save_s": round(save_s, 1),
                "open_s": round(open_s, 3), "rss_added_by_open_mb": round(after - before, 1),
                "first_search_ms": round(first * 1e3, 2), **lat, "queries": min(300, len(queries))}


def run_size(name: str, data: np.ndarray, queries: np.ndarray, bw: float, kinds: list[str], exact_queries: int,
             with_open: bool = False) -> dict:
    n, dim = data.shape
    raw = data.nbytes
    truth = exact_topk(data, queries, K)[0]  # recall by score: duplicates count whichever copy is found
    bound_ms = raw / (bw * 1e9) * 1e3
    lat, found = single_queries(lambda q: exact_topk(data, q, K)[1][0], queries[:exact_queries])
    out = {"data": name, "n": n, "dim": dim, "raw_mb": round(raw / 2**20, 1), "queries": len(queries),
           "auto_kind": ann_mod.kind_for(n, dim),
           "exact": {**lat, "bandwidth_bound_ms": round(bound_ms, 3),
                     "p50_vs_bandwidth_bound": round(lat["p50_ms"] / bound_ms, 2), "queries": exact_queries}}
    if with_open:
        out["exact"]["opened"] = measure_open(index_for(data, "exact"), queries)
    for kind in kinds:
        index = index_for(data, kind)
        out[kind] = measure_kind(index, queries, truth, raw)
        out[kind]["p50_speedup_vs_exact"] = round(out["exact"]["p50_ms"] / out[kind]["p50_ms"], 1)
        if with_open and index._ann is not None:
            out[kind]["opened"] = measure_open(index, queries)
        del index
    return out


def tiny_clip_embeddings(n: int) -> np.ndarray:
    from PIL import Image

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.toyworld import scenes as S

    clip = Registry(load_catalog(), device="cpu", profile="tiny").for_slot("clip")
    rng = np.random.default_rng(0)
    out = []
    for start in range(0, n, 1000):
        # Three in four drawn in a varied look, as the tiny bundle was trained.
        images = [Image.fromarray(S.render_scene(S.sample_scene(rng), size=64, rng=rng if i % 4 else None))
                  for i in range(min(1000, n - start))]
        out.append(np.asarray(clip.encode_images(images, batch_size=64), np.float32))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,32768,100000,1000000")  # 32,768 x 512-d: the exact limit
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--no-extra", action="store_true", help="only the CLIP-like sizes (no tiny_clip, uniform rows)")
    ap.add_argument("--quick", action="store_true", help="10k and 100k, 300 queries, no uniform row")
    args = ap.parse_args()
    import faiss

    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    nq = 300 if args.quick else args.queries
    started = time.perf_counter()
    machine = {"cpu_count": os.cpu_count(), "faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    bw = bandwidth_gbs()

    tiny = tiny_clip_embeddings(20_000 + nq)
    fit = clip_like.fit(tiny[:20_000])
    mixture = clip_like.Mixture(fit, dim=512)
    realism = {"tiny_clip_128d": clip_like.describe(tiny[:20_000])}
    results = [] if args.no_extra else [run_size("tiny_clip", tiny[:20_000], tiny[20_000:], bw, ["hnsw", "ivfpq"],
                                                 min(nq, 300))]
    for n in sizes:
        data, queries = mixture.sample(n, seed=1), mixture.sample(nq, seed=2)
        realism[f"clip_like_512d_{n}"] = clip_like.describe(data)
        row = run_size("clip_like", data, queries, bw, ["hnsw", "ivfpq"], min(nq, 300 if n < 10**6 else 50),
                       with_open=True)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress: a 1M row takes minutes
        del data
    if not args.quick and not args.no_extra:
        rng = np.random.default_rng(5)
        data = rng.standard_normal((100_000 + nq, 512), dtype=np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        results.append(run_size("uniform", data[:100_000], data[100_000:], bw, ["hnsw"], 100))
    print(json.dumps({"benchmark": "ann", "quick": args.quick, "machine": machine,
                      "memory_copy_gb_per_s": round(bw, 2), "mixture_fit": fit.to_dict(), "realism": realism,
                      "results": results, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                      "total_s": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
