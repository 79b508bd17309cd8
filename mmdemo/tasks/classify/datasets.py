"""Labelled datasets for training heads: a user's CSV (loose files or one zip) or a generated task.

Every problem in a CSV names its row (the header is row 1), up to five at once, so a
person can fix the file in one go; media paths may not leave the CSV's folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.hashing import content_hash
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, load_audio, load_image, safe_extract_zip
from mmdemo.toyworld.tasks import TASKS, make_examples, task_info

MAX_ROWS = 20_000
MAX_CLASSES = 100
MAX_LABEL_CHARS = 100
MAX_TEXT_CHARS = 1000
MAX_ZIP_BYTES = 1024 * 1024 * 1024  # expanded size of an uploaded dataset zip
MAX_AUDIO_SECONDS = 30.0
MAX_IMAGE_PIXELS = 40_000_000
MAX_REPORTED_ROW_ERRORS = 5
REQUIRED_COLUMNS = ("image", "text", "label")
OPTIONAL_COLUMNS = ("audio",)
# The generated tasks a head can be trained on (the bundle's own), by name.
GENERATED_TASKS: tuple[str, ...] = tuple(TASKS)


def rate_of(audio) -> Callable[[], int]:
    """``audio``'s sample rate, asked only when a clip is there to resample: a dataset
    without audio never loads the profile's audio model (a download, on a real profile)."""
    return lambda: getattr(audio, "sample_rate", 16000)


@dataclass
class LabeledExample:
    image: object  # PIL image or HxWx3 uint8 array
    text: str
    audio: np.ndarray | None
    label: str
    row: int = 0  # line in the CSV (1 is the header), 0 for generated examples


@dataclass
class Dataset:
    examples: list[LabeledExample]
    label_names: list[str]
    modalities: tuple[str, ...]
    name: str
    content_hash: str  # same data -> same hash: the key of the feature cache
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)


def _row_error(row: int, msg: str) -> str:
    return f"row {row}: {msg}"


def _raise_rows(errors: list[str], total: int, csv_name: str) -> None:
    shown = "\n".join(f"- {e}" for e in errors[:MAX_REPORTED_ROW_ERRORS])
    more = f"\n(and {total - MAX_REPORTED_ROW_ERRORS} more)" if total > MAX_REPORTED_ROW_ERRORS else ""
    raise MMDemoError("dataset_rows_invalid", f"{csv_name}: {total} row(s) could not be used. Fix them and upload "
                                              f"again:\n{shown}{more}")


def _decode_csv(data: bytes, csv_name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MMDemoError("csv_not_utf8", f"{csv_name}: row {line} is not valid UTF-8 text (byte {exc.start}). "
                                          "Save the CSV as UTF-8 and upload it again.") from None


def _resolve_media(root: Path, value: str, suffixes, what: str) -> Path:
    """A media path from the CSV, inside ``root`` only (a CSV must not read /etc/passwd).
    Uploaded loose files lose their folders, so the bare file name is tried second."""
    rel = value.strip().replace("\\", "/")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or ".." in rel.split("/"):
        raise MMDemoError("media_path_unsafe", f"{what} path {value!r} must be relative to the CSV, without '..'")
    if Path(rel).suffix.lower() not in suffixes:
        raise MMDemoError("media_type_unsupported", f"{what} {value!r} is not a supported {what.lower()} file "
                                                    f"({', '.join(sorted(suffixes))})")
    root = root.resolve()
    for candidate in (root / rel, root / Path(rel).name):
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
    raise MMDemoError("media_not_found", f"{what} file {value!r} was not found next to the CSV (upload it with the "
                                         "CSV, or put both in one zip)")


def _row_media(root: Path, value: str, suffixes, what: str, problems: list[str], if_empty: str) -> Path | None:
    """A row's media file, or None with what was wrong added to ``problems``."""
    if not value:
        problems.append(if_empty)
        return None
    try:
        return _resolve_media(root, value, suffixes, what)
    except MMDemoError as exc:
        problems.append(str(exc))
        return None


def read_csv_dataset(csv_path: str | Path, media_root: str | Path | None = None, *,
                     audio_rate: int | Callable[[], int] = 16000, max_rows: int = MAX_ROWS,
                     max_classes: int = MAX_CLASSES, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """A labelled dataset from a CSV with columns image, text, label (and optional audio);
    media paths are relative to ``media_root`` (default: the CSV's folder).

    Every problem names its CSV row (the header is row 1); up to five are reported at once."""
    csv_path = Path(csv_path)
    name = csv_path.name
    root = Path(media_root) if media_root is not None else csv_path.parent
    if not csv_path.is_file():
        raise MMDemoError("csv_not_found", f"CSV file {name!r} was not found. Upload it again.")
    data = csv_path.read_bytes()
    if not data.strip():
        raise MMDemoError("csv_empty", f"{name} is empty. It needs a header row (image,text,label[,audio]) and one "
                                       "row per example.")
    text = _decode_csv(data, name)
    if "\x00" in text:
        raise MMDemoError("csv_not_text", f"{name} is not a text CSV (it holds NUL bytes). Upload a CSV saved as "
                                          "UTF-8 text.")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise MMDemoError("csv_header_unreadable", f"{name}: the header row could not be read ({exc}).") from None
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MMDemoError("csv_columns_missing", f"{name} is missing column(s) {', '.join(missing)}. The header must "
                          f"name image, text, label (and optionally audio); it has: {', '.join(header) or 'nothing'}.")
    col = {c: columns.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in columns}

    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            rows.append((reader.line_num, fields))
            if len(rows) > max_rows:
                raise MMDemoError("dataset_too_large", f"{name} has more than {max_rows:,} examples (the limit). "
                                                       "Split it or sample it down, then upload again.")
    except csv.Error as exc:
        raise MMDemoError("csv_invalid", f"{name}: row {reader.line_num} is not valid CSV ({exc}).") from None
    if not rows:
        raise MMDemoError("dataset_empty", f"{name} has a header but no examples. Add one row per example.")

    uses_audio = "audio" in col and any(len(f) > col["audio"] and f[col["audio"]].strip() for _, f in rows)
    errors: list[str] = []
    n_errors = 0
    parsed: list[tuple[int, str, str, Path, Path | None]] = []
    for row, fields in rows:
        def cell(c: str) -> str:
            return fields[col[c]].strip() if c in col and len(fields) > col[c] else ""
        problems = []
        if len(fields) < len(columns):
            problems.append(f"has {len(fields)} field(s), the header has {len(columns)}")
        label, txt = cell("label"), cell("text")
        if not label:
            problems.append("the label is empty")
        elif len(label) > MAX_LABEL_CHARS:
            problems.append(f"the label is longer than {MAX_LABEL_CHARS} characters")
        if not txt:
            problems.append("the text is empty")
        img = _row_media(root, cell("image"), IMAGE_SUFFIXES, "Image", problems, "the image is empty")
        aud = _row_media(root, cell("audio"), AUDIO_SUFFIXES, "Audio", problems,
                         "the audio is empty (other rows have audio: every row needs it)") if uses_audio else None
        if problems:
            n_errors += 1
            errors.append(_row_error(row, "; ".join(problems)))
            continue
        parsed.append((row, txt[:MAX_TEXT_CHARS], label, img, aud))
    if n_errors:
        _raise_rows(errors, n_errors, name)

    labels = [p[2] for p in parsed]
    classes, counts = np.unique(np.array(labels, dtype=object), return_counts=True)
    if len(classes) > max_classes:
        raise MMDemoError("too_many_classes", f"{name} has {len(classes):,} different labels; at most {max_classes} "
                          "are supported. Is the label column right? Merge rare labels, then upload again.")
    if len(classes) < 2:
        raise MMDemoError("too_few_classes", f"{name} has only one label ({classes[0]!r}); a classifier needs at "
                                             "least two.")
    single = [str(c) for c, n in zip(classes, counts) if n < 2]
    if single:
        first_rows = {p[2]: p[0] for p in reversed(parsed)}
        listed = ", ".join(f"{s!r} (row {first_rows[s]})" for s in single[:10])
        raise MMDemoError("class_too_small", f"{name}: each label needs at least 2 examples (one to train on, one to "
                          f"validate); {len(single)} have only one: {listed}{' ...' if len(single) > 10 else ''}.")

    examples: list[LabeledExample] = []
    notices: list[str] = []
    digest = hashlib.sha256(data)
    for i, (row, txt, label, img, aud) in enumerate(parsed):
        try:
            loaded = load_image(img, name=img.name, max_pixels=MAX_IMAGE_PIXELS)
            wave = None
            if aud is not None:
                clip = load_audio(aud, name=aud.name, target_sr=audio_rate, max_seconds=MAX_AUDIO_SECONDS)
                if clip.silent:
                    notices.append(Notice("silent_audio", f"row {row}: audio {aud.name!r} is silent.", aud.name))
                wave = clip.wave
        except MMDemoError as exc:
            n_errors += 1
            errors.append(_row_error(row, str(exc)))
            continue
        digest.update(img.read_bytes())
        if aud is not None:
            digest.update(aud.read_bytes())
        examples.append(LabeledExample(loaded.image, txt, wave, label, row))
        if progress is not None and (i % 100 == 0 or i == len(parsed) - 1):
            progress(i + 1, len(parsed))
    if n_errors:
        _raise_rows(errors, n_errors, name)
    modalities = ("image", "text", "audio") if uses_audio else ("image", "text")
    return Dataset(examples, sorted(map(str, classes)), modalities, csv_path.stem, digest.hexdigest(), notices)


def load_dataset_upload(files: Sequence[str | Path], work_dir: str | Path, *,
                        audio_rate: int | Callable[[], int] = 16000, max_rows: int = MAX_ROWS,
                        max_classes: int = MAX_CLASSES, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """A dataset from an upload: one zip holding a CSV and its media, or a CSV plus its
    media files (matched by file name, since browsers upload files without folders)."""
    paths = [Path(str(f)) for f in (files or []) if f]
    if not paths:
        raise MMDemoError("dataset_upload_missing", "Upload a CSV (columns image, text, label[, audio]) with its media "
                                                   "files, or one zip holding both.")
    work_dir = Path(work_dir)
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    csvs = [p for p in paths if p.suffix.lower() == ".csv"]
    if zips:
        if len(paths) > 1:
            raise MMDemoError("dataset_upload_mixed", "Upload either one zip (CSV + media inside) or a CSV with its "
                                                      "media files, not both.")
        extracted, notices = safe_extract_zip(zips[0], work_dir, max_files=2 * max_rows + 10,
                                              max_total_bytes=MAX_ZIP_BYTES,
                                              allowed_suffixes=IMAGE_SUFFIXES | AUDIO_SUFFIXES | {".csv"})
        csvs = [p for p in extracted if p.suffix.lower() == ".csv"]
        if len(csvs) != 1:
            found = ", ".join(p.name for p in csvs[:5]) or "none"
            raise MMDemoError("zip_csv_count", f"The zip {zips[0].name!r} must hold exactly one CSV (found: {found}).")
        ds = read_csv_dataset(csvs[0], audio_rate=audio_rate, max_rows=max_rows, max_classes=max_classes,
                              progress=progress)
        ds.notices[:0] = notices
        return ds
    if len(csvs) != 1:
        raise MMDemoError("csv_count", f"Upload exactly one CSV with your media files (got {len(csvs)} CSV files).")
    work_dir.mkdir(parents=True, exist_ok=True)
    skipped = []
    for p in paths:
        if p.suffix.lower() in IMAGE_SUFFIXES | AUDIO_SUFFIXES | {".csv"}:
            shutil.copyfile(p, work_dir / p.name)
        else:
            skipped.append(p.name)
    ds = read_csv_dataset(work_dir / csvs[0].name, audio_rate=audio_rate, max_rows=max_rows,
                          max_classes=max_classes, progress=progress)
    if skipped:
        ds.notices.append(Notice("files_ignored", f"Ignored {len(skipped)} file(s) that are neither CSV, image nor "
                                                  f"audio: {', '.join(skipped[:5])}."))
    return ds


def generated_dataset(task: str, n: int, seed: int = 0) -> Dataset:
    """A generated task from the toy world (the same one the bundled heads learned)."""
    info = task_info(task)
    if not 20 <= n <= MAX_ROWS:
        raise MMDemoError("examples_count", f"Generate between 20 and {MAX_ROWS:,} examples (got {n}).")
    made = make_examples(task, n, seed=seed, split="train", image_size=64)
    examples = [LabeledExample(e.image, e.text, e.audio, e.label) for e in made]
    key = content_hash(f"toyworld:{task}:{n}:{seed}:64".encode())
    return Dataset(examples, list(info.labels), info.modalities, task, key)
