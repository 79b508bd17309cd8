"""What the image and audio galleries share: finding their files and captions, and
telling in one notice which files could not be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from mmdemo.errors import Notice
from mmdemo.media import collect_files, read_captions


def gallery_files(files: Any, *, suffixes: Iterable[str], max_files: int, what: str,
                  extract_dir: Path | None = None,
                  captions: dict[str, str] | None = None) -> tuple[list[Path], dict[str, str], list[str]]:
    """The files to embed (files, folders and zips expanded), ``{file name: caption}`` from
    the ``captions.json`` beside them, or in a folder above them up to the folder or zip
    given (the nearest wins), or uploaded among the files (``captions`` given win), and notices."""
    # captions.json belongs beside the files: it is a companion, not a stray file to warn about.
    paths, notices = collect_files(files, suffixes=suffixes, max_files=max_files, what=what,
                                   extract_dir=extract_dir, companions=("captions.json",))
    captions = dict(captions or {})
    given = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files or ())
             if isinstance(f, (str, Path))]
    roots = [p.resolve() for p in given if p.is_dir()] + ([Path(extract_dir).resolve()] if extract_dir else [])
    for folder in dict.fromkeys(p.parent for p in paths):
        for fname, caption in read_captions(folder).items():
            captions.setdefault(fname, caption)
        # A zip's captions.json often sits at its root while the files are in a subfolder.
        here = folder.resolve()
        root = next((r for r in roots if here != r and here.is_relative_to(r)), None)
        while root is not None and here != root:
            here = here.parent
            for fname, caption in read_captions(here).items():
                captions.setdefault(fname, caption)
    # An upload widget puts every file in a folder of its own: a captions.json uploaded with
    # the files is not beside them, so it is read for all of them.
    for f in given:
        if f.name == "captions.json" and f.is_file():
            for fname, caption in read_captions(f.parent).items():
                captions.setdefault(fname, caption)
    return paths, captions, list(notices)


def skipped_notice(skipped: list[str], what: str, *, ellipsis: bool = True) -> Notice:
    """One notice for the files that could not be read, with the first three reasons."""
    shown = "; ".join(skipped[:3]) + (" ..." if ellipsis and len(skipped) > 3 else "")
    return Notice("files_unreadable", f"Skipped {len(skipped)} unreadable {what}: {shown}")
