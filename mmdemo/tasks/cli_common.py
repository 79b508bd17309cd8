"""What every task CLI shares: the model flags and a registry built from them.

Kept free of torch and gradio imports so `python -m mmdemo ... --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="tiny", help="model profile (default: tiny, the embedded bundle)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--catalog", type=Path, help="an extra model catalog (TOML)")
    p.add_argument("--json", action="store_true", help="print JSON")


def registry_from(args):
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    return Registry(load_catalog(args.catalog), device=args.device, profile=args.profile)
