"""`index build` on Ray vs in process: a folder of generated scenes indexed with the tiny
CLIP (CPU) by ``build_gallery`` (what `index build` runs without --engine, no embedding
cache) and by ``build_index_ray`` with 1 and with 2 workers, each writing its index file,
in the same run.

Ray starts once (``ray_start_s``) and every Ray run starts from an empty shards folder,
so it pays what a first `--engine ray` run pays: an actor pool whose actors each import
torch and load the model, and the Parquet shards. Each side runs ``--runs`` times in turn
(medians); ``equal`` says whether the indexes hold the same items in the same order with
embeddings within 1e-5 (``max_abs_diff``).

    python bench/bench_ray_index.py [--n 2000] [--runs 2]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_folders import write_folder  # noqa: E402 - bench/, beside this script
from timing import alternating_medians  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images in the folder (default 2000)")
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each side, in turn (medians)")
    args = ap.parse_args()

    import numpy as np

    from mmdemo.index import EmbeddingIndex
    from mmdemo.registry import registry_from_settings
    from mmdemo.settings import Settings
    from mmdemo.tasks.image import build_gallery
    from mmdemo.tasks.ray_indexing import EncoderSettings, build_index_ray, ray_session

    clip = registry_from_settings(Settings(device="cpu")).for_slot("clip")
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mmdemo-bench-ray-") as tmp:
        root = Path(tmp)
        write_folder(root / "pics", args.n)

        def in_process():
            build_gallery([root / "pics"], clip, max_files=args.n).index.save(root / "local.npz")

        def on_ray(workers: int):
            def run():
                shutil.rmtree(root / f"ray{workers}-shards", ignore_errors=True)  # a first run, every time
                reports[workers] = build_index_ray([root / "pics"], root / f"ray{workers}.npz", workers=workers,
                                                   settings=EncoderSettings(device="cpu"))
            return run

        started = time.perf_counter()
        with ray_session(None):
            ray_start = time.perf_counter() - started
            times = alternating_medians({"in_process": in_process, "ray_1_worker": on_ray(1),
                                         "ray_2_workers": on_ray(2)}, args.runs, warmup=in_process)
        local = EmbeddingIndex.load(root / "local.npz")
        results = {}
        for name, workers in (("ray_1_worker", 1), ("ray_2_workers", 2)):
            got = EmbeddingIndex.load(root / f"ray{workers}.npz")
            same_items = list(got.items) == list(local.items)
            diff = float(np.abs(np.asarray(got.embeddings) - np.asarray(local.embeddings)).max()) if same_items else None
            results[name] = {"seconds": round(times[name], 2), "images_per_s": round(args.n / times[name], 1),
                             "workers": reports[workers]["workers"], "shards": reports[workers]["shards"],
                             "equal": bool(same_items and diff <= 1e-5), "max_abs_diff": diff}
    results["in_process"] = {"seconds": round(times["in_process"], 2),
                             "images_per_s": round(args.n / times["in_process"], 1)}
    print(json.dumps({
        "images": args.n, "profile": "tiny", "device": "cpu", "cpu_cores": os.cpu_count(),
        "ray_start_s": round(ray_start, 2), **results,
        "throughput_2_workers_over_1": round(times["ray_1_worker"] / times["ray_2_workers"], 2),
        "throughput_ray_2_workers_over_in_process": round(times["in_process"] / times["ray_2_workers"], 2),
        "note": (f"This machine has {os.cpu_count()} CPU cores shared by both workers and Ray's own processes: the "
                 "figures show Ray's overhead (an actor pool whose actors each import torch and load the model, "
                 "Parquet shards; ray_start_s is paid once per command on top) rather than how it scales. Ray "
                 "pays off on a cluster, with GPU actors or many cores, and for galleries too large to redo "
                 "after a failure (shards resume)."),
    }, indent=2))


if __name__ == "__main__":
    main()
