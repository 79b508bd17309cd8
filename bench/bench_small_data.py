"""Train your own on small data: every head kind on a generated 200-row dataset of each
bundled task, through the same call the Classify tab makes (``train_on_dataset``, default
options), then scored on 1,000 fresh examples the training never saw.

    python bench/bench_small_data.py [--rows 200] [--test 1000] [--seeds 0] [--quick]

Prints JSON: per task and seed, each head kind's and each single-modality baseline's
test accuracy, its best epoch, and the seconds to train all kinds on cached features;
``margin`` is each head minus the best single modality (target: attention >= 0.15 on both
tasks), ``train_seconds`` the time for all five kinds on cached features (target <= 60 s).
Image tokens come from the profile's token tower (the bundle's CoCa), as in the app.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seeds", default="0", help="comma-separated dataset seeds")
    ap.add_argument("--quick", action="store_true", help="a 300-example test set (CI)")
    args = ap.parse_args(argv)
    if args.quick:
        args.test = min(args.test, 300)

    from mmdemo.features import extract_features
    from mmdemo.paths import TINY_BUNDLE_DIR
    from mmdemo.tasks.classify.datasets import generated_dataset
    from mmdemo.tasks.classify.features import FeatureCache, dataset_features
    from mmdemo.tasks.classify.training import HEAD_KINDS, train_on_dataset
    from mmdemo.toyworld.tasks import TASKS, make_examples
    from mmdemo.training.bundle_io import load_bundle
    from mmdemo.training.fusion_trainer import evaluate_head

    clip, tower, audio = load_bundle(TINY_BUNDLE_DIR, "cpu")
    work = Path(tempfile.mkdtemp(prefix="mmdemo-bench-small-"))
    cache = FeatureCache(work)
    out = {"rows": args.rows, "test": args.test, "tasks": {}}
    for task, info in TASKS.items():
        task_audio = audio if "audio" in info.modalities else None
        test = extract_features(make_examples(task, args.test, seed=4242, split="train"), clip, task_audio,
                                label_names=list(info.labels), token_tower=tower)
        for seed in (int(s) for s in args.seeds.split(",")):
            ds = generated_dataset(task, args.rows, seed=seed)
            dataset_features(ds, clip, task_audio, cache=cache, token_tower=tower)  # cached: the timing is training
            t0 = time.perf_counter()
            report = train_on_dataset(ds, list(HEAD_KINDS), clip, task_audio, cache=cache, seed=seed,
                                      token_tower=tower)
            seconds = time.perf_counter() - t0
            row = {}
            for r in report.leaderboard:
                if r.baseline:  # a single-modality head, scored on its own modality of the test set
                    m = r.modalities[0]
                    acc = evaluate_head(report.baseline_heads[r.name], test.only(m))["accuracy"]
                else:
                    acc = evaluate_head(report.heads[r.name], test)["accuracy"]
                row[r.name] = {"test_accuracy": round(acc, 4), "val_accuracy": round(r.accuracy, 4),
                               "best_epoch": r.best_epoch, "seconds": r.seconds}
            best_single = max(row[name]["test_accuracy"] for name in report.baseline_heads)
            out["tasks"].setdefault(task, {})[f"seed {seed}"] = {
                "heads": row, "chance": round(1 / len(info.labels), 4),
                "margin_over_best_single": {k: round(row[k]["test_accuracy"] - best_single, 4) for k in HEAD_KINDS},
                "train_seconds": round(seconds, 1)}
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
