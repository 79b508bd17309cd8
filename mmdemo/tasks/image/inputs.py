"""What every image task reads first: an image from whatever an upload widget hands
over, candidate texts, a search query and a result count, each checked in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mmdemo.errors import MMDemoError, Notice
from mmdemo.media import LoadedImage, load_image, parse_text_lines
from mmdemo.tasks.text_notices import unknown_words_notice

MAX_CANDIDATES = 200  # captions to rank / texts to search
MAX_QUERY_CHARS = 300


def as_source(source: Any) -> Any:
    """What upload widgets hand over (dicts, file objects, gallery tuples) -> something load_image reads."""
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (int, float)):
        source = source[0]  # (image, caption) rows of a gallery widget
    if isinstance(source, dict):
        source = source.get("path") or source.get("name") or source.get("url")
    elif isinstance(getattr(source, "path", None), (str, Path)):  # gradio FileData and the like
        source = source.path
    return source


def load(source: Any, name: str | None = None) -> LoadedImage:
    source = as_source(source)
    if source is None or (isinstance(source, str) and not source.strip()):
        raise MMDemoError("image_missing", "Upload, paste or pick an image first.")
    return load_image(source, name=name)


def text_notices(clip, texts: Sequence[str], what: str) -> list[Notice]:
    """Notices naming the texts over the model's context length (they were cut) and the
    words it does not know."""
    return _truncation_notice(clip, texts, what) + unknown_words_notice(clip, texts)


def _truncation_notice(clip, texts: Sequence[str], what: str) -> list[Notice]:
    over = [t for t, cut in zip(texts, clip.truncated(list(texts))) if cut]
    if not over:
        return []
    shown = ", ".join(repr(t if len(t) <= 40 else t[:37] + "...") for t in over[:3]) + (" ..." if len(over) > 3 else "")
    n = getattr(clip, "context_length", None)
    limit = f" ({n} tokens)" if n else ""
    if what == "query":
        return [Notice("query_truncated", f"The query is over the model's context length{limit}: truncated, "
                                          "so only its beginning was searched.")]
    return [Notice("texts_truncated",
                   f"{len(over)} of the {what} {'was' if len(over) == 1 else 'were'} over the model's context "
                   f"length{limit}: truncated, so only the beginning was scored: {shown}.")]


def parse_texts(texts: str | Sequence[str] | None, what: str) -> tuple[list[str], list[str]]:
    return parse_text_lines(texts, what=what, max_items=MAX_CANDIDATES, max_chars=MAX_QUERY_CHARS)


def read_query(query: str | None, clip) -> tuple[str, list[str]]:
    """The search text, stripped and at most MAX_QUERY_CHARS long, with notices about cuts."""
    query = (query or "").strip() if isinstance(query, (str, type(None))) else str(query).strip()
    if not query:
        raise MMDemoError("query_empty", "Type what to search for (e.g. 'a red star').")
    notices: list[str] = []
    if len(query) > MAX_QUERY_CHARS:
        query = query[:MAX_QUERY_CHARS].rstrip()
        notices.append(Notice("query_shortened",
                              f"The query was longer than {MAX_QUERY_CHARS} characters and was shortened."))
    notices += text_notices(clip, [query], "query")
    return query, notices
