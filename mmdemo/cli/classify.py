"""`python -m mmdemo train-fusion ...` and `classify ...`: the Classify tab from a terminal."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mmdemo.cli.common import print_json, registry_from, task_command, warn


def cmd_train_fusion(args) -> int:
    from mmdemo.tasks import classify as tasks

    registry = registry_from(args)
    # Lazy: models load when the data needs them (no audio column, no audio model).
    clip, tower = registry.for_slot("clip", lazy=True), registry.for_slot("tokens", lazy=True)
    audio = registry.for_slot("audio", lazy=True) if registry.profile.audio else None
    kinds = [k.strip() for k in args.heads.split(",") if k.strip()]
    work = tempfile.TemporaryDirectory(prefix="mmdemo-dataset-")
    with work:
        rate = tasks.rate_of(audio)
        # A local CSV reads its media where it lies; only a zip needs unpacking.
        ds = (tasks.load_dataset_upload([args.data], work.name, audio_rate=rate) if args.data.lower().endswith(".zip")
              else tasks.read_csv_dataset(args.data, audio_rate=rate))
        quiet = args.json

        def progress(row):
            if quiet:
                return
            if row["stage"] == "train":
                print(f"  {row['kind']:<12} epoch {row['epoch']:>3}/{row['epochs']}  train loss {row['train_loss']:.4f}"
                      f"  val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}", file=sys.stderr)

        report = tasks.train_on_dataset(ds, kinds, clip, audio, epochs=args.epochs, lr=args.lr,
                                        baselines=not args.no_baselines, progress=progress,
                                        cache=tasks.FeatureCache(args.cache_dir) if args.cache_dir else None,
                                        token_tower=tower)
    out = args.out if args.out.suffix == ".safetensors" else args.out.with_name(args.out.name + ".safetensors")
    tasks.write_head(report, out, clip, audio, tower)
    if args.json:
        print_json(report.to_dict())
        return 0
    warn(report.notices)
    print(f"{report.dataset}: {report.n_examples} examples ({report.n_train} train / {report.n_val} validation), "
          f"labels: {', '.join(report.label_names)}")
    print(f"{'head':<14}{'accuracy':>10}{'macro-F1':>10}  per-class recall")
    for r in report.leaderboard:
        recall = ", ".join(f"{k} {v:.2f}" for k, v in r.per_class_recall.items())
        flag = "  (at chance)" if r.at_chance(report.chance) else ""
        print(f"{r.name:<14}{r.accuracy:>10.3f}{r.macro_f1:>10.3f}  {recall}{flag}")
    print(f"winner: {report.winner.name}, saved to {out}")
    return 0


def cmd_classify(args) -> int:
    from mmdemo.tasks.classify import classify, resolve_head

    registry = registry_from(args)
    handle = resolve_head(registry, args.head, allow_paths=True)
    clip = registry.for_slot("clip", lazy=True)
    audio = registry.for_slot("audio", lazy=True) if registry.profile.audio else None
    tower = registry.for_slot("tokens", lazy=True)
    res = classify(handle, args.image, args.text, args.audio, clip, audio, token_tower=tower)
    if args.json:
        print_json(res.to_dict())
        return 0
    warn(res.notices)
    print(f"{res.head} ({res.kind} over {', '.join(res.modalities)}):")
    for r in res.labels:
        print(f"  {r['score']:7.2%}  {r['label']}")
    top = res.labels[0]["label"]
    for a in res.ablation:
        p = next(x["score"] for x in a["labels"] if x["label"] == top)
        print(f"  without {a['modality']:<6} P({top}) = {p:.2%}")
    return 0


def register(sub) -> None:
    from mmdemo.tasks.classify import DEFAULT_EPOCHS, HEAD_KINDS

    with task_command(sub, "train-fusion", cmd_train_fusion,
                      help="train fusion heads on a CSV (or zip) of image,text[,audio],label",
                      description="Train heads side by side with single-modality baselines; save the best.") as s:
        s.add_argument("data",
                       help="a CSV (columns image,text,label[,audio]; media relative to it) or a zip holding one")
        s.add_argument("--heads", default="concat,attention", help=f"comma-separated kinds: {','.join(HEAD_KINDS)}")
        s.add_argument("--out", required=True, type=Path, help="where to save the best head (.safetensors added)")
        s.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="at most (early stopping)")
        s.add_argument("--lr", type=float, default=1e-3)
        s.add_argument("--no-baselines", action="store_true", help="skip the single-modality baselines")
        s.add_argument("--cache-dir", type=Path, help="keep extracted features here for the next run")

    with task_command(sub, "classify", cmd_classify, help="classify image + text (+ audio) with a fusion head") as s:
        s.add_argument("--head", required=True,
                       help="a fusion head name from the catalog, or a .safetensors head file")
        s.add_argument("image", help="image file")
        s.add_argument("text", help="the text, e.g. 'is there a red star?'")
        s.add_argument("audio", nargs="?", help="audio file (for heads that use audio)")
