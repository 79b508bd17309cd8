"""The generated world's whole vocabulary: every word its scenes, sounds and tasks say.

Its own module because it sits above all three (scenes, sounds and tasks each know
only their own words); the tokenizer of the tiny bundle is built from it.
"""

from __future__ import annotations

from mmdemo.toyworld import scenes, sounds, tasks


def vocabulary() -> list[str]:
    """Every word any generated text (scenes, sounds, tasks) can contain."""
    return sorted(scenes.WORDS | sounds.WORDS | tasks.WORDS)
