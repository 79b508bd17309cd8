"""What a large image index is built from: folders, zips and image files as the in-process
`index build` takes them, plus lists of paths (a text file, one a line) and Parquet tables
of URIs (a column ``uri`` or ``path``), in one ordered list of :class:`Source`.

Local files are listed by :func:`gallery_files`, so a folder gives the same files in the
same order, with the same captions (``captions.json``), as ``build_gallery`` gives it.
Remote URIs (``s3://``, ``gs://``, ``hdfs://``...) are kept as they are: the workers read
them through pyarrow's file systems.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mmdemo.errors import MMDemoError, Notice
from mmdemo.media import IMAGE_SUFFIXES
from mmdemo.tasks.gallery_files import gallery_files

LIST_SUFFIXES = (".txt", ".lst")
TABLE_SUFFIXES = (".parquet", ".pq")
URI_COLUMNS = ("uri", "path")


@dataclass(frozen=True)
class Source:
    """One image to index."""

    uri: str  # what a worker reads: an absolute path, or a remote URI
    path: str  # the index item's path: what the in-process path would write (the URI when remote)
    name: str
    caption: str = ""

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def stamp(self) -> str:
        """Size and modification time of a local file: a file changed in place is encoded again."""
        if self.remote:
            return ""
        try:
            st = os.stat(self.uri)
        except OSError:
            return ""
        return f"{st.st_size}:{st.st_mtime_ns}"

    def item(self) -> dict:
        return {"name": self.name, "path": self.path, "caption": self.caption}


def is_remote(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive, C:\...


def list_sources(sources: Iterable[str | Path], *, max_files: int | None = None,
                 extract_dir: Path | None = None) -> tuple[list[Source], list[str]]:
    """Every image the sources name, in order, and notices. ``max_files`` None: no limit."""
    entries: list[str | Path] = []  # local paths as Path, remote URIs as str
    missing: list[str] = []  # paths a list or a table names that are not there
    for s in sources:
        p = _local(str(s))
        if p is None:
            entries.append(str(s))
        elif p.suffix.lower() in (*LIST_SUFFIXES, *TABLE_SUFFIXES) and p.is_file():
            listed = _read_path_list(p) if p.suffix.lower() in LIST_SUFFIXES else _read_uri_table(p)
            # One stale line in a list of millions must not stop the run: it is skipped, and said.
            missing += [str(e) for e in listed if isinstance(e, Path) and not e.exists()]
            entries += [e for e in listed if not (isinstance(e, Path) and not e.exists())]
        else:
            entries.append(p)
    limit = sys.maxsize if max_files is None else max_files
    out: list[Source] = []
    notices: list[str] = []
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        notices.append(Notice("list_paths_missing", f"{len(missing)} path(s) in the lists given were not found and "
                                                    f"were skipped: {shown}."))
    # Runs of local entries go to gallery_files together: its ordering, de-duplication and captions.
    for remote, run in itertools.groupby(entries, key=lambda e: isinstance(e, str)):
        if remote:
            out += [Source(u, u, PurePosixPath(unquote(urlparse(u).path)).name or u) for u in run]
            continue
        try:
            paths, captions, found = gallery_files(list(run), suffixes=IMAGE_SUFFIXES, max_files=limit,
                                                   what="images", extract_dir=extract_dir)
        except MMDemoError as exc:
            if exc.code != "folder_too_large":  # a guard against crawling a whole drive, kept here too
                raise
            raise MMDemoError("folder_too_large", "A folder given holds too many files to walk through. For a "
                                                  "gallery that large, list its images in a text file (one path a "
                                                  "line) or a Parquet table (a column 'uri') and give that "
                                                  "instead.") from None
        notices += found
        out += [Source(os.path.abspath(p), str(p), p.name, captions.get(p.name, "")) for p in paths]
    if not out and missing:
        raise MMDemoError("no_files_found", f"None of the {len(missing)} path(s) in the lists given were found "
                                            f"(e.g. {missing[0]}). Check the paths: relative ones are relative "
                                            "to the list's own folder.")
    if not out:
        raise MMDemoError("no_files_found", "No images found: the lists and tables given are empty.")
    if len(out) > limit:
        raise MMDemoError("too_many_files", f"Too many images: at most {limit} are allowed (--max-files). "
                                            "Raise --max-files or leave it out.")
    return out, notices


def _local(entry: str, base: Path | None = None) -> Path | None:
    """``entry`` as a local path (``file://`` URIs too, relative ones under ``base``); None when remote."""
    if is_remote(entry):
        return None
    if entry.startswith("file:"):
        entry = url2pathname(urlparse(entry).path)
    p = Path(entry).expanduser()
    return Path(os.path.normpath(base / p)) if base is not None and not p.is_absolute() else p


def _read_path_list(path: Path) -> list[str | Path]:
    """A text file, one path or URI a line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MMDemoError("list_unreadable", f"Could not read the list of paths {path.name}: {exc}. Give a UTF-8 "
                                             "text file with one image path or URI a line.") from None
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    # Relative paths are relative to the list, not to wherever the command runs.
    return [_local(e, path.parent) or e for e in entries]


def _read_uri_table(path: Path) -> list[str | Path]:
    """A Parquet table's ``uri`` (or ``path``) column, in row order; empty cells skipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        column = next((c for c in URI_COLUMNS if c in names), None)
        if column is None:
            raise MMDemoError("table_no_uri_column", f"{path.name} has no column named 'uri' or 'path' (it has "
                                                     f"{', '.join(names) or 'none'}). Name the column of image "
                                                     "paths or URIs 'uri'.")
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise MMDemoError("table_unreadable", f"{path.name} is not a readable Parquet table ({exc}). Give a "
                                              "Parquet file with a column 'uri' of image paths or URIs.") from None
    return [_local(v, path.parent) or v for v in values if isinstance(v, str) and v.strip()]
