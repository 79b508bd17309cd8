"""`python -m mmdemo serve | models | build-tiny | eval`: the app, the catalog and the
embedded tiny bundle from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmdemo.cli.common import print_json


def _print(obj, as_json: bool) -> None:
    if as_json:
        print_json(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            print(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    else:
        print(obj)


def cmd_serve(args) -> int:
    import runpy

    from mmdemo.paths import REPO_DIR

    sys.argv = ["app.py", *args.rest]
    runpy.run_path(str(REPO_DIR / "app.py"), run_name="__main__")
    return 0


def cmd_models(args) -> int:
    from mmdemo.catalog import load_catalog

    cat = load_catalog(args.catalog)
    rows = {"profiles": {n: {"clip": p.clip, "captioner": p.captioner, "audio": p.audio, "fusion": list(p.fusion)}
                         for n, p in cat.profiles.items()},
            "models": {n: {"kind": s.kind, "weights": s.weights_source, "description": s.description}
                       for n, s in cat.entries.items()}}
    _print(rows, args.json)
    return 0


def cmd_build_tiny(args) -> int:
    from mmdemo.training.build_tiny import SMOKE, BuildOptions, build

    overrides = dict(SMOKE) if args.smoke else {}
    if args.out:
        overrides["out"] = args.out
    if args.stages:
        overrides["stages"] = tuple(x.strip() for x in args.stages.split(",") if x.strip())  # build() checks them
    for key in ("clip_steps", "audio_steps", "coca_steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    report = build(BuildOptions(), **overrides)
    if not args.smoke and "heads" in report:  # the bundle is complete: evaluate it, write the card
        from mmdemo.training.evaluate import evaluate, write_model_card

        metrics = evaluate(Path(report["options"]["out"]))
        write_model_card(Path(report["options"]["out"]), report, metrics)
        report["eval"] = metrics
    _print(report, True)
    return 0


def cmd_eval(args) -> int:
    from mmdemo.paths import TINY_BUNDLE_DIR
    from mmdemo.training.evaluate import evaluate

    metrics = evaluate(Path(args.bundle or TINY_BUNDLE_DIR), n=args.n, seed=args.seed)
    _print(metrics, args.json)
    return 0


def register(sub) -> None:
    s = sub.add_parser("serve", help="run the app (same flags as app.py)")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("models", help="list catalog entries and profiles")
    s.add_argument("--catalog", type=Path)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("build-tiny", help="train the embedded tiny bundle from nothing (about 50 min on 2 CPU cores)")
    s.add_argument("--out", type=Path, help="output folder (default assets/models/tiny)")
    s.add_argument("--smoke", action="store_true", help="a few steps only, to check the pipeline")
    s.add_argument("--stages", help="comma-separated subset of clip,coca,heads (default: all; later stages reuse --out)")
    s.add_argument("--seed", type=int)
    s.add_argument("--clip-steps", type=int)
    s.add_argument("--audio-steps", type=int)
    s.add_argument("--coca-steps", type=int)
    s.set_defaults(func=cmd_build_tiny)

    s = sub.add_parser("eval", help="evaluate the tiny bundle on freshly generated held-out data")
    s.add_argument("--bundle", type=Path)
    s.add_argument("--n", type=int, default=1000, help="retrieval candidates (default 1000)")
    s.add_argument("--seed", type=int, default=987654, help="data seed (never used in training)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_eval)
