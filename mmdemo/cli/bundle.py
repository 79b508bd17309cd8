"""`python -m mmdemo serve | models | build-tiny | eval`: the app, the catalog and the
embedded tiny bundle from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmdemo.cli.common import print_json
from mmdemo.paths import REPO_DIR


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

    sys.argv = ["app.py", *args.rest]
    runpy.run_path(str(REPO_DIR / "app.py"), run_name="__main__")
    return 0


def _mb(mb: float | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1000:.2f} GB" if mb >= 1000 else f"{mb:.1f} MB" if mb < 100 else f"{mb:.0f} MB"


def _params(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e7 else f"{n / 1e6:.2f} M"


def _dim(name: str | None, dim: int | None) -> str:
    return "-" if name is None else f"{name} ({dim}-d)" if dim else name


def models_tables(catalog) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the profiles, what each tab does with them and the entries:
    what `python -m mmdemo models` prints, and (--markdown) the README's profiles section."""
    from mmdemo.catalog import entry_summary, profile_summary

    summaries = {n: profile_summary(catalog, n) for n in catalog.profiles}
    profiles, tabs = [], []
    for name, s in summaries.items():
        slots = [n for n in (s["clip"], s["captioner"], s["audio"]) if n]
        heads = f" + {len(s['fusion'])} fusion heads" if s["fusion"] else ""
        where = "downloaded on first use" if s["downloads"] else "on disk"
        profiles.append([name, ", ".join(dict.fromkeys(slots)) + heads, _params(s["params"]),
                         f"{_mb(s['download_mb'])} {where}", _mb(s["memory_mb"]), s["advice"] or "?"])
        image, audio, classify = (s["tabs"][t] for t in ("image", "audio", "classify"))
        tabs.append([
            name,
            f"captions: {image['captions'] or '-'}; ranking and search: "
            f"{_dim(image['ranking_and_search'], image['embed_dim'])}",
            "-" if audio["model"] is None else
            f"{audio['model']}: {(audio['sample_rate'] or 0) / 1000:g} kHz, {audio['window_s'] or 0:g} s windows",
            f"image + text: {_dim(classify['image_text'], classify['image_text_dim'])}; audio: "
            f"{_dim(classify['audio'], classify['audio_dim'])}; "
            + (f"{classify['bundled_heads']} bundled heads" if classify["bundled_heads"] else "no bundled heads"),
        ])
    entries, heads = [], []
    for name, spec in catalog.entries.items():
        e = entry_summary(spec)
        if spec.kind == "fusion":  # summed, not listed: there are many, and each is small
            heads.append(e)
            continue
        download = _mb(e["download_mb"]) if e["downloads"] else "on disk"
        entries.append([name, e["kind"], _params(e["params"]), download, _mb(e["memory_mb"]),
                        e["weights"].replace(str(REPO_DIR) + "/", "")])
    if heads:
        known = [h for h in heads if h["params"] is not None and h["memory_mb"] is not None]
        total = (sum(h["params"] for h in known), sum(h["memory_mb"] for h in known)) if len(known) == len(heads) \
            else (None, None)
        entries.append([f"{len(heads)} fusion heads", "fusion", _params(total[0]), "on disk", _mb(total[1]),
                        "each listed by: python -m mmdemo models --json"])
    return [("Profiles", ["profile", "models", "parameters", "download", "memory (fp32)", "device"], profiles),
            ("What each tab does with them", ["profile", "Image", "Audio", "Classify (zero-shot and train your own)"],
             tabs),
            ("Entries", ["entry", "kind", "parameters", "download", "memory (fp32)", "weights"], entries)]


def _render(tables, markdown: bool) -> str:
    out = []
    for title, header, rows in tables:
        if markdown:
            out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(row) + " |" for row in rows]
        else:
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            out += [title, *("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def cmd_models(args) -> int:
    from mmdemo.catalog import entry_summary, load_catalog, profile_summary

    cat = load_catalog(args.catalog)
    if args.json:
        print_json({"profiles": {n: profile_summary(cat, n) for n in cat.profiles},
                    "models": {n: entry_summary(s) for n, s in cat.entries.items()}})
    else:
        print(_render(models_tables(cat), markdown=args.markdown), end="")
    return 0


def cmd_build_tiny(args) -> int:
    from mmdemo.training.build_tiny import SMOKE, BuildOptions, build

    overrides = dict(SMOKE) if args.smoke else {}
    if args.out:
        overrides["out"] = args.out
    if args.stages:
        overrides["stages"] = tuple(x.strip() for x in args.stages.split(",") if x.strip())  # build() checks them
    if args.head_kinds:  # retrain some kinds only; the others' files stay as they are
        overrides["head_kinds"] = tuple(x.strip() for x in args.head_kinds.split(",") if x.strip())
    if args.head_tasks:  # retrain some tasks' heads only (e.g. those that read a rebuilt tower)
        overrides["head_tasks"] = tuple(x.strip() for x in args.head_tasks.split(",") if x.strip())
    for key in ("clip_steps", "audio_steps", "coca_steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    report = build(BuildOptions(), **overrides)
    if not args.smoke and "familiarity" in report.get("options", {}).get("stages", ()):
        # The last stage ran: the bundle is complete; evaluate it, write the card.
        from mmdemo.tasks.world_eval import SECTIONS
        from mmdemo.training.evaluate import evaluate, write_model_card

        metrics = evaluate(Path(report["options"]["out"]), sections=SECTIONS)
        write_model_card(Path(report["options"]["out"]), report, metrics)
        report["eval"] = metrics
    _print(report, True)
    return 0


def cmd_eval(args) -> int:
    from mmdemo.paths import TINY_BUNDLE_DIR
    from mmdemo.tasks.world_eval import SECTIONS
    from mmdemo.training.evaluate import evaluate

    bundle = Path(args.bundle or TINY_BUNDLE_DIR)
    if getattr(args, "only", None) and args.write_card:
        from mmdemo.errors import MMDemoError

        raise MMDemoError("eval_only_card", "--write-card needs the whole evaluation; drop --only.")
    if getattr(args, "only", None) == "saliency":  # the map's peak-in-box rate: seconds
        from mmdemo.tasks.world_eval import saliency_hit_rate
        from mmdemo.training.bundle_io import bundle_handles

        clip, _ = bundle_handles(bundle, "cpu")
        _print({"seed": args.seed, "saliency": saliency_hit_rate(clip, seed=args.seed, n=min(args.n, 500))}, args.json)
        return 0
    if getattr(args, "only", None) == "prompt_ensemble":  # one section: a minute, not the whole evaluation
        from mmdemo.tasks.world_eval import prompt_ensemble
        from mmdemo.training.bundle_io import bundle_handles
        from mmdemo.training.calibrate import second_renderers

        clip, audio = bundle_handles(bundle, "cpu")
        # As the whole evaluation runs it, in the same places of its JSON (the second
        # generator's looks are drawn afresh here: its figures differ a little from a whole run's).
        n = min(args.n, 500)
        image2, sound2 = second_renderers(audio.sample_rate, args.seed)
        _print({"seed": args.seed, "prompt_ensemble": prompt_ensemble(clip, audio, seed=args.seed, n=n),
                "second_generator": {"prompt_ensemble": prompt_ensemble(clip, audio, seed=args.seed, n=n,
                                                                        image=image2, sound=sound2)}}, args.json)
        return 0
    metrics = evaluate(bundle, n=args.n, seed=args.seed, sections=SECTIONS)
    if args.write_card:  # after a change to the evaluation itself; the weights stay as they are
        from mmdemo.errors import MMDemoError
        from mmdemo.training.evaluate import write_model_card

        try:
            report = json.loads((bundle / "build_report.json").read_text())
        except (OSError, ValueError) as exc:
            raise MMDemoError("build_report_unreadable", f"Cannot write the model card: {bundle / 'build_report.json'} "
                                                         f"is missing or unreadable ({exc}).") from None
        write_model_card(bundle, report, metrics)
    _print(metrics, args.json)
    return 0


def register(sub) -> None:
    s = sub.add_parser("serve", help="run the app (same flags as app.py)")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("models", help="list profiles (models, sizes, what each tab does) and catalog entries")
    s.add_argument("--catalog", type=Path)
    s.add_argument("--json", action="store_true")
    s.add_argument("--markdown", action="store_true", help="markdown tables (the README's profiles section)")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("build-tiny", help="train the embedded tiny bundle from nothing (about 2 hours on 2 CPU cores)")
    s.add_argument("--out", type=Path, help="output folder (default assets/models/tiny)")
    s.add_argument("--smoke", action="store_true", help="a few steps only, to check the pipeline")
    s.add_argument("--stages", help="comma-separated subset of clip,audio,coca,heads,familiarity (default: all; "
                                    "later stages reuse --out)")
    s.add_argument("--seed", type=int)
    s.add_argument("--head-kinds", help="comma-separated head kinds the heads stage trains (default: all)")
    s.add_argument("--head-tasks", help="comma-separated tasks whose heads the heads stage trains (default: all)")
    s.add_argument("--clip-steps", type=int)
    s.add_argument("--audio-steps", type=int)
    s.add_argument("--coca-steps", type=int)
    s.set_defaults(func=cmd_build_tiny)

    s = sub.add_parser("eval", help="evaluate the tiny bundle on freshly generated held-out data")
    s.add_argument("--bundle", type=Path)
    s.add_argument("--n", type=int, default=1000, help="retrieval candidates (default 1000)")
    s.add_argument("--seed", type=int, default=987654, help="data seed (never used in training)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--write-card", action="store_true",
                   help="also rewrite the bundle's eval.json and MODEL_CARD.md with these numbers")
    s.add_argument("--only", choices=("prompt_ensemble", "saliency"), help="run one section only")
    s.set_defaults(func=cmd_eval)
