"""`python -m mmdemo ...`: the same task functions as the app, from a terminal.

One module per group of commands (:mod:`.image`, :mod:`.audio`, :mod:`.classify`,
:mod:`.folders`, :mod:`.bundle`), each with ``register(subparsers)``. A user-fixable problem
(``MMDemoError``) prints ``error: <message>`` and exits 2, never a traceback; any
other exception is a bug in mmdemo and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from mmdemo.cli import audio, bundle, classify, folders, image
from mmdemo.errors import MMDemoError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmdemo", description="mmdemo from the terminal.")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (bundle, image, audio, classify, folders):  # --help lists the commands in this order
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MMDemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
