"""Compare tab costs, each next to a baseline measured in the same run:

every fusion head of the tiny profile on one example (image + text + audio):
``compare_heads`` (the inputs read once, each modality encoded once for all heads) vs the
obvious way, one ``classify`` call per head (each reads and encodes its inputs again).
Both give the same answers (checked here before timing).

    python bench/bench_compare.py [--quick]

Prints one JSON object. Ratios > 1 mean compare_heads is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from timing import alternating_medians  # noqa: E402 - bench/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs = 3 if args.quick else 10

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks.classify import classify, generated_examples
    from mmdemo.tasks.compare import RegistryHeads, compare_heads

    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    clip, audio, tower = registry.for_slot("clip"), registry.for_slot("audio"), registry.for_slot("tokens")
    heads = RegistryHeads(registry)
    with tempfile.TemporaryDirectory() as tmp:
        ex = next(e for e in generated_examples(Path(tmp)) if e["task"] == "scene_sound_match")

        def side_by_side():
            return compare_heads(heads, ex["image"], ex["text"], ex["audio"], clip, audio, token_tower=tower)

        def one_by_one():
            return [classify(heads.resolve(n), ex["image"], ex["text"], ex["audio"], clip, audio, token_tower=tower)
                    for n in heads.names()]

        same = [r["prediction"] for r in side_by_side().rows] == [c.labels[0]["label"] for c in one_by_one()]
        # Each warmed up once (loads every head and encoder), then run in turn.
        t = alternating_medians({"side_by_side": side_by_side, "one_by_one": one_by_one}, runs)
        fast, base = t["side_by_side"], t["one_by_one"]
    print(json.dumps({
        "heads": len(heads.names()),
        "runs": runs,
        "same_answers": same,
        "compare_heads_s": round(fast, 4),
        "classify_per_head_s": round(base, 4),
        "speedup": round(base / fast, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
