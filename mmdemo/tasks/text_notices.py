"""What a text model cannot read in the texts it is given, said next to the result.

A closed-vocabulary model (the tiny bundle knows only its generated world's words) reads
every other word as ``<unk>``: "a dog" is searched as if it were "a <unk>", and the
result looks as confident as any. The user should hear which words were lost.
"""

from __future__ import annotations

from typing import Sequence

from mmdemo.errors import Notice

SHOWN_WORDS = 8


def unknown_words_notice(model, texts: Sequence[str]) -> list[Notice]:
    """A notice naming the words ``model`` does not know (none for a model that spells
    every word, like open_clip's BPE or CLAP's tokenizer, which have no ``unknown_words``)."""
    find = getattr(model, "unknown_words", None)
    unknown = find(list(texts)) if find is not None and texts else []
    if not unknown:
        return []
    shown = ", ".join(repr(w) for w in unknown[:SHOWN_WORDS])
    more = f" and {len(unknown) - SHOWN_WORDS} more" if len(unknown) > SHOWN_WORDS else ""
    s = "" if len(unknown) == 1 else "s"
    return [Notice("words_unknown",
                   f"The model does not know the word{s} {shown}{more}: it reads "
                   f"{'it' if len(unknown) == 1 else 'each'} as unknown, so the result says nothing about "
                   f"{'it' if len(unknown) == 1 else 'them'}. The tiny bundle knows only its generated world's "
                   "words (shapes, colours, sizes, positions, backgrounds, sounds; see its model card).",
                   subject=", ".join(unknown))]
