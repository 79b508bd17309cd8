"""Files users hand over: one upload read with its size checks, zips extracted safely,
files/folders/zips expanded into a list, and the ``captions.json`` a gallery may carry.

As everywhere in :mod:`mmdemo.media`, input is hostile: a bad upload ends in an
``MMDemoError`` that names the file and says what to do, never in a crash, a
path outside the destination or a full disk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from mmdemo.errors import MMDemoError, Notice

__all__ = ["fmt_bytes", "read_source_bytes", "display_name", "safe_extract_zip", "collect_files", "read_captions"]


def fmt_bytes(n: float | None) -> str:
    """``"512 B"``, ``"1.5 MB"``...; empty for an unknown size (None)."""
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def display_name(source: Any, name: str | None, default: str) -> str:
    """What messages call an upload: the name given, else the file name, else ``default``."""
    if name:
        return str(name)
    if isinstance(source, (str, Path)):
        return Path(source).name or str(source)
    return default


def read_source_bytes(source: str | Path | bytes, label: str, kind: str, max_bytes: int | None) -> bytes:
    """Read a path or bytes with the size checks done before anything is decoded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.exists():
            raise MMDemoError("file_not_found", f"{kind} file {label!r} was not found ({path}). "
                                                "Check the path or upload it again.")
        if not path.is_file():
            raise MMDemoError("file_is_folder", f"{kind} {label!r} is a folder, not a file ({path}). "
                                                f"Pick a single {kind.lower()} file.")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise MMDemoError(
                "file_too_large",
                f"{kind} {label!r} is too large ({fmt_bytes(size)}; the limit is {fmt_bytes(max_bytes)}). "
                "Upload a smaller file."
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MMDemoError("file_unreadable", f"{kind} {label!r} could not be read ({exc.strerror or exc}). "
                                                 "Check the file's permissions.") from None
    if not data:
        raise MMDemoError("file_empty", f"{kind} {label!r} is empty (0 bytes). "
                                        "Upload the file again; the upload may have failed.")
    if max_bytes is not None and len(data) > max_bytes:
        raise MMDemoError(
            "file_too_large",
            f"{kind} {label!r} is too large ({fmt_bytes(len(data))}; the limit is {fmt_bytes(max_bytes)}). "
            "Upload a smaller file."
        )
    return data


def _zip_member_path(name: str) -> PurePosixPath | None:
    """The member's safe relative path, or None when it is one we skip silently."""
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts:
        return None
    if parts[0] == "__MACOSX" or any(p.startswith(".") and p != ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def _zip_entry_is_unsafe(name: str) -> bool:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        return True  # absolute POSIX path or a Windows drive letter
    return ".." in norm.split("/")


def safe_extract_zip(
    zip_path: str | Path,
    dest_dir: str | Path,
    *,
    max_files: int = 1000,
    max_total_bytes: int = 500 * 1024 * 1024,
    allowed_suffixes: Iterable[str] | None = None,
    companions: Iterable[str] = (),
) -> tuple[list[Path], list[str]]:
    """Extract a user's zip without letting it escape ``dest_dir`` or fill the disk.

    Members named in ``companions`` (e.g. ``captions.json``) are extracted beside the
    files, for the caller to read, but neither returned nor reported as skipped.

    Returns ``(paths, notices)``: extracted files in sorted order, and warnings
    such as skipped files. Directories, ``__MACOSX/`` and dotfiles are skipped
    silently. Any unsafe entry rejects the whole archive before anything is
    written; a size overrun while streaming removes what was written.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    label = zip_path.name
    allowed = {s.lower() for s in allowed_suffixes} if allowed_suffixes is not None else None
    companions = frozenset(companions)
    if not zip_path.is_file():
        raise MMDemoError("file_not_found", f"Zip file {label!r} was not found ({zip_path}). Upload it again.")
    if zip_path.stat().st_size == 0:
        raise MMDemoError("file_empty", f"Zip file {label!r} is empty (0 bytes). Upload it again.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise MMDemoError("zip_invalid", f"{label!r} is not a valid zip file ({exc}). "
                                         "Re-create the archive and upload it again.") from None

    notices: list[str] = []
    with zf:
        # Reject before writing anything, so a bad archive leaves no half-extracted mess.
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        skipped: list[str] = []
        seen: set[str] = set()
        n_files = 0  # companions don't count
        for info in zf.infolist():
            if _zip_entry_is_unsafe(info.filename):
                raise MMDemoError(
                    "zip_unsafe",
                    f"Zip file {label!r} contains an unsafe path {info.filename!r} (absolute or with '..'). "
                    "Re-create the archive with relative paths only."
                )
            unix_mode = info.external_attr >> 16
            if unix_mode and stat.S_ISLNK(unix_mode):
                raise MMDemoError(
                    "zip_unsafe",
                    f"Zip file {label!r} contains a symbolic link {info.filename!r}. "
                    "Re-create the archive without links (store the real files)."
                )
            if info.is_dir():
                continue
            rel = _zip_member_path(info.filename)
            if rel is None:
                continue
            companion = rel.name in companions
            if allowed is not None and rel.suffix.lower() not in allowed and not companion:
                skipped.append(info.filename)
                continue
            if info.flag_bits & 0x1:
                raise MMDemoError("zip_encrypted", f"Zip file {label!r} is password-protected ({info.filename!r}). "
                                                   "Upload an unencrypted zip.")
            key = rel.as_posix().lower()  # case-insensitive file systems would merge these anyway
            if key in seen:
                notices.append(Notice("zip_duplicate_entry", f"Zip file {label!r} lists {info.filename!r} twice; "
                                                             "kept the first copy.", subject=label))
                continue
            seen.add(key)
            plan.append((info, rel))
            n_files += not companion
            if n_files > max_files:
                raise MMDemoError(
                    "zip_too_many_files",
                    f"Zip file {label!r} has too many files (more than {max_files}); at most {max_files} are allowed. "
                    "Split it into smaller archives."
                )
        declared = sum(info.file_size for info, _ in plan)
        if declared > max_total_bytes:
            raise MMDemoError(
                "zip_too_large",
                f"Zip file {label!r} is too large when extracted ({fmt_bytes(declared)}; the limit is "
                f"{fmt_bytes(max_total_bytes)}). Upload fewer or smaller files."
            )
        if skipped:
            kinds = ", ".join(sorted(allowed)) if allowed else ""
            shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
            notices.append(Notice("files_skipped", f"Skipped {len(skipped)} file(s) in {label!r} that are not {kinds}: "
                                                  f"{shown}.", subject=label))

        dest_dir.mkdir(parents=True, exist_ok=True)
        dest_root = dest_dir.resolve()
        written: list[Path] = []
        total = 0
        try:
            for info, rel in plan:
                target = dest_root.joinpath(*rel.parts)
                # Belt and braces: the name checks above should make this impossible.
                if not target.resolve().is_relative_to(dest_root):
                    raise MMDemoError("zip_unsafe", f"Zip file {label!r} contains an unsafe path {info.filename!r}.")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    written.append(target)
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        total += len(chunk)
                        # Counted on real output: headers can lie about sizes.
                        if total > max_total_bytes:
                            raise MMDemoError(
                                "zip_too_large",
                                f"Zip file {label!r} is too large when extracted (more than "
                                f"{fmt_bytes(max_total_bytes)}). Upload fewer or smaller files."
                            )
                        dst.write(chunk)
        except MMDemoError:
            _remove_all(written)
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            _remove_all(written)
            raise MMDemoError(
                "zip_corrupt",
                f"Zip file {label!r} is corrupt or uses an unsupported compression ({exc}). "
                "Re-create the archive (standard ZIP, deflate) and upload it again."
            ) from None
        except Exception:
            _remove_all(written)
            raise
    return sorted(p for p in written if p.name not in companions), notices


def _remove_all(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _as_path(item: Any) -> Path:
    """Accept what upload widgets hand over: paths, strings, dicts or file-like objects with a path."""
    if isinstance(item, (str, Path)):
        return Path(item)
    if isinstance(item, dict):
        for key in ("path", "name"):
            if item.get(key):
                return Path(item[key])
    for attr in ("path", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, (str, Path)) and value:
            return Path(value)
    raise MMDemoError("upload_type_unsupported",
                      f"Can't use {type(item).__name__} as a file; pass file paths or uploaded files.")


_MAX_SCANNED = 200_000


def collect_files(
    paths: Iterable[Any] | str | Path | None,
    *,
    suffixes: Iterable[str],
    max_files: int,
    what: str = "images",
    extract_dir: str | Path | None = None,
    companions: Iterable[str] = (),
) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively, sorted) and zips into a list of files.

    Files named in ``companions`` (e.g. ``captions.json`` beside a gallery) belong
    with the others: they are neither returned nor reported as skipped.

    Zips are extracted with :func:`safe_extract_zip` into ``extract_dir`` (a new
    temporary folder when None; the caller owns it). Files with other suffixes
    are skipped with a notice. Returns ``(files, notices)``; raises MMDemoError
    when nothing matches or more than ``max_files`` would be returned.
    """
    wanted = {s.lower() for s in suffixes}
    companions = frozenset(companions)
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    notices: list[str] = []
    out: list[Path] = []
    seen: set[Path] = set()
    skipped: list[str] = []

    def too_many() -> MMDemoError:
        return MMDemoError("too_many_files", f"Too many {what}: at most {max_files} are allowed. "
                                             "Select fewer files or split them up.")

    scanned = 0

    def add(p: Path) -> None:
        key = p.resolve()
        if key in seen:
            return
        seen.add(key)
        out.append(p)
        if len(out) > max_files:
            raise too_many()

    for item in paths:
        p = _as_path(item)
        if not p.exists():
            raise MMDemoError("file_not_found", f"{p.name or p!s} was not found ({p}). Check the path or upload it again.")
        if p.is_dir():
            for root, dirs, files in os.walk(p):  # os.walk doesn't follow symlinked folders: no loops
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
                scanned += len(files)
                if scanned > _MAX_SCANNED:
                    # Someone pointed us at a home folder or a drive: stop instead of crawling it.
                    raise MMDemoError(
                        "folder_too_large",
                        f"Folder {p.name or p!s} holds too many files (more than {_MAX_SCANNED:,}) to search "
                        f"for {what}. Pick a smaller folder with at most {max_files} {what}."
                    )
                for fname in sorted(files):
                    if fname.startswith("."):
                        continue
                    f = Path(root) / fname
                    if f.suffix.lower() in wanted:
                        add(f)
                    elif f.suffix.lower() != ".zip" and fname not in companions:
                        skipped.append(str(f.relative_to(p)))
            continue
        if p.suffix.lower() == ".zip" and ".zip" not in wanted:
            if extract_dir is None:
                dest = Path(tempfile.mkdtemp(prefix="mmdemo-zip-"))
            else:
                dest = Path(extract_dir) / f"{len(seen)}-{p.stem}"
            try:
                extracted, zip_notices = safe_extract_zip(
                    p, dest, max_files=max_files - len(out), allowed_suffixes=wanted, companions=companions
                )
            except MMDemoError as exc:
                if extract_dir is None:
                    shutil.rmtree(dest, ignore_errors=True)
                if exc.code == "zip_too_many_files":  # its limit was what is left of ours: report ours
                    raise too_many() from None
                raise
            notices.extend(zip_notices)
            for f in extracted:
                add(f)
            continue
        if p.suffix.lower() in wanted:
            add(p)
        elif p.name not in companions:
            skipped.append(p.name)

    if skipped:
        shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        notices.append(Notice("files_skipped", f"Skipped {len(skipped)} file(s) that are not {what} "
                                              f"({', '.join(sorted(wanted))}): {shown}."))
    if not out:
        raise MMDemoError("no_files_found", f"No {what} found. Upload files ending in "
                                            f"{', '.join(sorted(wanted))} (or a zip of them).")
    return out, notices


def read_captions(folder: Path) -> dict[str, str]:
    """``captions.json`` beside gallery files: {file name: caption} or a list of {file, caption} rows."""
    path = Path(folder) / "captions.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict):
        return {Path(str(k)).name: str(v) for k, v in data.items() if isinstance(v, str)}
    out = {}
    for row in data if isinstance(data, list) else []:
        if not isinstance(row, dict):
            continue
        fname = next((row[k] for k in ("file", "path", "name", "audio") if isinstance(row.get(k), str)), None)
        caption = next((row[k] for k in ("caption", "text", "description") if isinstance(row.get(k), str)), None)
        if fname and caption:
            out[Path(fname).name] = caption
    return out
