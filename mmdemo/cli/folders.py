"""`python -m mmdemo folder TASK PATH... --out results.csv`: the Folders tab from a terminal."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mmdemo.cli.common import print_json, registry_from, task_command, warn
from mmdemo.errors import MMDemoError

# CLI names of the tasks (mmdemo.tasks.folders.TASKS keys, with dashes as elsewhere in the CLI).
TASK_NAMES = {"caption": "caption", "rank-captions": "rank", "zero-shot": "zero_shot", "match-audio": "match_audio",
              "classify": "classify"}


def cmd_folder(args) -> int:
    from mmdemo.tasks import folders

    for out in args.out:
        if out.suffix.lower() not in (".csv", ".json"):
            raise MMDemoError("results_format_unknown", f"--out {out}: results go to a .csv or .json file.")
    registry = registry_from(args)
    task = TASK_NAMES[args.task]
    head = None
    if task == "classify":
        from mmdemo.tasks.classify import resolve_head

        if not args.head:
            raise MMDemoError("head_missing", "classify needs --head NAME (a fusion head) or a .safetensors file.")
        head = resolve_head(registry, args.head, allow_paths=True)
    models = folders.FolderModels.for_task(registry, task, head)
    options = folders.FolderOptions(texts=args.texts or None, template="\n".join(args.template or []) or None,
                                    head=head, text=args.text, method=args.method, max_length=args.max_length,
                                    num_beams=args.beams)
    with tempfile.TemporaryDirectory(prefix="mmdemo-folder-") as tmp:
        run = folders.FolderRun(args.sources, task, options, models, extract_dir=Path(tmp),
                                max_files=args.max_files, batch_size=args.batch_size)
        if not args.json:
            warn(run.notices)
        done = 0

        def report(batch):
            nonlocal done
            done += len(batch)
            if not args.json:
                print(f"  {done}/{len(run)} files", file=sys.stderr)

        rows = folders.run_to_files(run, args.out, on_batch=report)
    summary = run.summary(rows, complete=True)
    if args.json:
        print_json({**summary, "out": [str(o) for o in args.out], "rows": [r.to_dict() for r in rows]})
    else:
        for r in rows:
            score = "" if r.score is None else f"  ({r.score:.3f})"
            shown = f"error: {r.error}" if r.error else f"{r.answer}{score}"
            print(f"{r.file}: {shown}")
        where = f"; written to {', '.join(map(str, args.out))}" if args.out else ""
        print(f"{summary['done']} file(s), {summary['errors']} error(s){where}.")
    # Every file failed: nothing useful came out, say so in the exit status.
    return 2 if rows and summary["errors"] == len(rows) else 0


def register(sub) -> None:
    from mmdemo.models.decode_options import METHODS
    from mmdemo.tasks.folders import BATCH_SIZE, MAX_FOLDER_FILES

    with task_command(sub, "folder", cmd_folder,
                      help="run caption, rank, zero-shot, match-audio or classify over a folder or zip",
                      description="One row per file (a file that can't be read is a row with its error); "
                                  "--out writes CSV or JSON as it goes.") as s:
        s.add_argument("task", choices=list(TASK_NAMES), help="what to do with every file")
        s.add_argument("sources", nargs="+", type=Path, help="folders, zips or files (a captions.json beside them "
                                                             "gives each file's caption)")
        s.add_argument("--out", action="append", type=Path, default=[],
                       help="results file, .csv or .json (repeat for both); rewritten after every batch")
        s.add_argument("--label", "--caption", dest="texts", action="append",
                       help="a candidate caption (rank-captions; none: the folder's captions.json, else the "
                            "built-in bank) or a label (zero-shot, match-audio); repeat for more")
        s.add_argument("--template", action="append",
                       help="prompt template with {} for the label (zero-shot: one; match-audio: repeat to average)")
        s.add_argument("--head", help="classify: a fusion head name, or a .safetensors head file")
        s.add_argument("--text", help="classify: the text every image goes with (default: its caption)")
        s.add_argument("--method", default="beam", choices=METHODS, help="caption: decoding method (default beam)")
        s.add_argument("--beams", type=int, default=3, help="caption: beam width (default 3)")
        s.add_argument("--max-length", type=int, default=20, help="caption: most words (default 20)")
        s.add_argument("--max-files", type=int, default=MAX_FOLDER_FILES,
                       help=f"most files (default {MAX_FOLDER_FILES})")
        s.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"files per batch (default {BATCH_SIZE})")
