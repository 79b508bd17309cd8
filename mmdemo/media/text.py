"""Text lists users type or upload (labels, captions, queries): one item per line,
stripped, de-duplicated and bounded, with notices for what was changed."""

from __future__ import annotations

from typing import Any, Iterable

from mmdemo.errors import MMDemoError, Notice

__all__ = ["parse_text_lines"]


def parse_text_lines(
    text: str | bytes | list[str] | None,
    *,
    what: str = "labels",
    max_items: int = 100,
    max_chars: int = 300,
) -> tuple[list[str], list[str]]:
    """One item per line (or list element): stripped, de-duplicated, bounded.

    Returns ``(items, notices)``; raises MMDemoError when nothing usable is left
    or there are more than ``max_items``.
    """
    notices: list[str] = []
    if text is None:
        raw_lines: list[str] = []
    else:
        pieces: Iterable[Any] = [text] if isinstance(text, (str, bytes, bytearray)) else text
        raw_lines = []
        for piece in pieces:
            if piece is None:
                continue
            if isinstance(piece, (bytes, bytearray)):
                try:
                    piece = bytes(piece).decode("utf-8")
                except UnicodeDecodeError:
                    piece = bytes(piece).decode("utf-8", errors="replace")
                    notices.append(Notice("text_not_utf8", f"Some {what} were not valid UTF-8 text; unreadable "
                                                           "characters were replaced with \ufffd."))
            raw_lines.extend(str(piece).splitlines())

    items: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    n_truncated = 0
    for line in raw_lines:
        line = line.replace("\ufeff", "").replace("\x00", "").strip()
        if not line:
            continue
        if len(line) > max_chars:
            line = line[:max_chars].rstrip()
            n_truncated += 1
        if line in seen:
            duplicates.append(line)
            continue
        seen.add(line)
        items.append(line)

    if not items:
        raise MMDemoError("text_list_empty", f"Enter at least one {_singular(what)} (one per line).")
    if len(items) > max_items:
        raise MMDemoError("text_list_too_long", f"Too many {what}: {len(items)} entered, at most {max_items} "
                                                "are allowed. Remove some and try again.")
    if n_truncated:
        notices.append(Notice("text_items_shortened", f"{n_truncated} of the {what} were longer than {max_chars} "
                                                      "characters and were shortened."))
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        notices.append(Notice("text_duplicates_removed", f"Removed {len(duplicates)} duplicate {what}: {shown}."))
    return items, notices


def _singular(what: str) -> str:
    if what.endswith(("sses", "xes", "ches", "shes")):
        return what[:-2]
    return what[:-1] if what.endswith("s") and not what.endswith("ss") else what
