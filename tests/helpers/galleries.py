"""Picking from a gallery folder (files + captions.json) what a search must find."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def unique_caption(folder: Path) -> tuple[str, str]:
    """A (file, caption) of the gallery whose caption no other file shares."""
    from mmdemo.media import read_captions

    captions = read_captions(folder)
    counts = Counter(captions.values())
    return next((f, c) for f, c in sorted(captions.items()) if counts[c] == 1 and (folder / f).is_file())
