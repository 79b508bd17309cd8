"""Whole folders: a folder of generated scenes through ``mmdemo.tasks.folders.FolderRun``
(files decoded and encoded 32 at a time, candidate texts encoded once per run) vs one
request per image through the tabs' own task functions (what a user without the Folders
tab would script), on the embedded tiny bundle, in the same run:

- ``rank``: 16 typed candidate captions; baseline ``tasks.image.rank_captions`` per image;
- ``zero_shot``: 8 colour labels, template "a {} shape"; baseline ``tasks.classify.zero_shot``
  per image (image only);
- ``caption``: beam search (3 beams); baseline ``tasks.image.caption_image`` per image, on
  the first ``--n-caption`` images (decoding dominates and costs the same both ways).

``folder_batch_1_s`` runs the folder path with batches of one: it separates what batching
buys from what encoding the texts once buys. ``agreement`` is the share of files whose
answer is the same both ways (it should be 1.0). Each side is timed twice, alternating,
and the faster time is kept (this machine is shared). Ratios > 1 mean the folder path is faster.

    python bench/bench_folders.py [--n 500] [--n-caption 64]

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "black", "white")
SHAPES = ("circle", "square", "star", "ring")


def write_folder(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    from mmdemo.toyworld import scenes

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sc = scenes.sample_scene(rng, n_objects=1, split="any")
        path = folder / f"{i:04d}.png"
        Image.fromarray(scenes.render_scene(sc, size=64)).save(path)
        paths.append(path)
    return paths


def best_of(fns: dict, rounds: int = 2) -> tuple[dict, dict]:
    """Fastest time of each, alternating; and each one's last result."""
    best, out = {k: float("inf") for k in fns}, {}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, out


def measure(name: str, paths: list[Path], folder_fn, one_fn, rounds: int, with_batch_1: bool = False) -> dict:
    fns = {"folder": lambda: folder_fn(32), "per_image": lambda: [one_fn(p) for p in paths]}
    if with_batch_1:
        fns["folder_batch_1"] = lambda: folder_fn(1)
    best, out = best_of(fns, rounds)
    agree = sum(a == b for a, b in zip(out["folder"], out["per_image"])) / len(paths)
    row = {"images": len(paths), "folder_s": round(best["folder"], 3), "per_image_s": round(best["per_image"], 3),
           "folder_images_per_s": round(len(paths) / best["folder"], 1),
           "per_image_images_per_s": round(len(paths) / best["per_image"], 1),
           "speedup": round(best["per_image"] / best["folder"], 2), "agreement": round(agree, 3)}
    if with_batch_1:
        row["folder_batch_1_s"] = round(best["folder_batch_1"], 3)
        row["speedup_batching_alone"] = round(best["folder_batch_1"] / best["folder"], 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="images in the folder (default 500)")
    ap.add_argument("--n-caption", type=int, default=64, help="images captioned both ways (default 64)")
    ap.add_argument("--rounds", type=int, default=2, help="timed runs of each side, the fastest kept")
    args = ap.parse_args()

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks import folders as F
    from mmdemo.tasks.classify import zero_shot
    from mmdemo.tasks.image import caption_image, rank_captions

    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    clip, captioner = registry.for_slot("clip"), registry.for_slot("captioner")
    candidates = [f"a {c} {s}" for c in COLOURS[:4] for s in SHAPES]
    labels = list(COLOURS)
    with tempfile.TemporaryDirectory(prefix="mmdemo-bench-folders-") as tmp:
        paths = write_folder(Path(tmp) / "pics", args.n)

        def folder(task, files, **options):
            models = F.FolderModels(clip=clip, captioner=captioner)
            return lambda bs: [r.answer for r in F.FolderRun(files, task, F.FolderOptions(**options), models,
                                                             batch_size=bs).rows()]

        results = {
            "rank": measure("rank", paths, folder("rank", paths, texts=candidates),
                            lambda p: rank_captions(p, candidates, clip).ranked[0]["label"], args.rounds,
                            with_batch_1=True),
            "zero_shot": measure("zero_shot", paths, folder("zero_shot", paths, texts=labels, template="a {} shape"),
                                 lambda p: zero_shot(p, None, None, labels, clip, template="a {} shape")
                                 .labels[0]["label"], args.rounds),
        }
        few = paths[: args.n_caption]
        results["caption"] = measure("caption", few, folder("caption", few, method="beam", num_beams=3),
                                     lambda p: caption_image(p, captioner, method="beam", num_beams=3).captions[0],
                                     1)
    print(json.dumps({"profile": "tiny", "device": "cpu", "threads": os.environ.get("OMP_NUM_THREADS"),
                      "batch_size": 32, "tasks": results}, indent=2))


if __name__ == "__main__":
    main()
