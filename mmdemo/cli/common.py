"""What every CLI command shares: model flags, a registry built from them, output.

Kept free of torch and gradio imports so `python -m mmdemo ... --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

from mmdemo.settings import DEVICES, Settings


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="tiny", help="model profile (default: tiny, the embedded bundle)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--catalog", type=Path, help="an extra model catalog (TOML)")
    p.add_argument("--json", action="store_true", help="print JSON")


@contextlib.contextmanager
def task_command(sub, name: str, func: Callable, **kwargs) -> Iterator[argparse.ArgumentParser]:
    """A subcommand over the models: the caller adds its own arguments inside the
    ``with``; the model flags follow them (in --help too) and ``func`` runs it."""
    p = sub.add_parser(name, **kwargs)
    yield p
    add_model_flags(p)
    p.set_defaults(func=func)


def registry_from(args):
    """The same registry the app builds (``registry_from_settings``), from the model flags."""
    from mmdemo.registry import registry_from_settings

    return registry_from_settings(Settings(profile=args.profile, device=args.device, catalog=args.catalog))


def index_build_dirs(args) -> tuple[Path, Path, Path]:
    """`index build`'s (index file, folder for zip members, embedding cache). Zip members
    are extracted beside the index, so search results point at files that still exist."""
    from mmdemo.paths import default_cache_dir

    out = Path(args.out)
    return out, out.parent / f"{out.stem}-files", Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def recall_target(text: str) -> float:
    """argparse type of --target-recall: a recall in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a recall between 0 and 1 (e.g. 0.95), not {text!r}")
    return value


def print_search_line(out: Path) -> None:
    """`index build`'s last line: what a search of the new file goes through (it is
    opened again by memory map, which costs nothing)."""
    from mmdemo.tasks.saved_index import open_index, summary

    print(f"Search: {summary(open_index(out))}")


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def warn(notices) -> None:
    for notice in notices:
        print(f"warning: {notice}")
