"""Where things live on disk: the repository's assets and the user's data dir."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = REPO_DIR / "assets"
TINY_BUNDLE_DIR = ASSETS_DIR / "models" / "tiny"
EXAMPLES_DIR = ASSETS_DIR / "examples"
DEFAULT_CATALOG = PACKAGE_DIR / "catalog.toml"


def default_cache_dir() -> Path:
    """The user's mmdemo data dir (indexes, trained heads, feature caches)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmdemo"
