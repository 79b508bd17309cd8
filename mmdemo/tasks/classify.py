"""Classify tasks: image + text (+ audio) through a trained fusion head or zero-shot,
and training heads on a user's own data (CSV or zip) or on a generated task.

Pure functions: inputs are paths, arrays or PIL images plus registry handles; outputs
are dataclasses holding plain lists of ``{label, score}``. Nothing here imports gradio.

Why features are cached: the encoders are frozen, so a dataset's features never change
for one encoder. Extracting them once (in batches) and training every head on the same
tensors makes a training epoch cost milliseconds instead of a full encoding pass.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, load_audio, load_image, parse_text_lines, safe_extract_zip

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
FEATURE_BATCH = 256
# Early stopping ends most runs sooner; slow learners (gated heads) still improve after 30.
DEFAULT_EPOCHS = 60
DEFAULT_TEMPLATE = "a {}"
MODALITIES = ("image", "text", "audio")
# mmdemo.models.fusion.HEAD_KINDS, without importing torch when the app is built (a test keeps them equal).
HEAD_KINDS = ("weighted_sum", "concat", "bilinear", "attention", "gated")

__all__ = [
    "LabeledExample", "Dataset", "Classification", "ZeroShotResult", "TrainReport", "LeaderRow",
    "read_csv_dataset", "load_dataset_upload", "generated_dataset", "dataset_features", "FeatureCache",
    "check_training_options", "train_on_dataset", "write_head", "save_trained_head", "import_head",
    "register_saved_heads", "resolve_head", "read_inputs",
    "classify", "zero_shot", "head_name", "check_save_name", "generated_examples",
]


# --------------------------------------------------------------------------- datasets


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
    raise MMDemoError(f"{csv_name}: {total} row(s) could not be used. Fix them and upload again:\n{shown}{more}")


def _decode_csv(data: bytes, csv_name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MMDemoError(f"{csv_name}: row {line} is not valid UTF-8 text (byte {exc.start}). "
                          "Save the CSV as UTF-8 and upload it again.") from None


def _resolve_media(root: Path, value: str, suffixes, what: str) -> Path:
    """A media path from the CSV, inside ``root`` only (a CSV must not read /etc/passwd).
    Uploaded loose files lose their folders, so the bare file name is tried second."""
    rel = value.strip().replace("\\", "/")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or ".." in rel.split("/"):
        raise MMDemoError(f"{what} path {value!r} must be relative to the CSV, without '..'")
    if Path(rel).suffix.lower() not in suffixes:
        raise MMDemoError(f"{what} {value!r} is not a supported {what.lower()} file ({', '.join(sorted(suffixes))})")
    root = root.resolve()
    for candidate in (root / rel, root / Path(rel).name):
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved
    raise MMDemoError(f"{what} file {value!r} was not found next to the CSV (upload it with the CSV, or put both in one zip)")


def read_csv_dataset(csv_path: str | Path, media_root: str | Path | None = None, *, audio_rate: int = 16000,
                     max_rows: int = MAX_ROWS, max_classes: int = MAX_CLASSES,
                     progress: Callable[[int, int], None] | None = None) -> Dataset:
    """A labelled dataset from a CSV with columns image, text, label (and optional audio);
    media paths are relative to ``media_root`` (default: the CSV's folder).

    Every problem names its CSV row (the header is row 1); up to five are reported at once."""
    csv_path = Path(csv_path)
    name = csv_path.name
    root = Path(media_root) if media_root is not None else csv_path.parent
    if not csv_path.is_file():
        raise MMDemoError(f"CSV file {name!r} was not found. Upload it again.")
    data = csv_path.read_bytes()
    if not data.strip():
        raise MMDemoError(f"{name} is empty. It needs a header row (image,text,label[,audio]) and one row per example.")
    text = _decode_csv(data, name)
    if "\x00" in text:
        raise MMDemoError(f"{name} is not a text CSV (it holds NUL bytes). Upload a CSV saved as UTF-8 text.")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise MMDemoError(f"{name}: the header row could not be read ({exc}).") from None
    columns = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MMDemoError(f"{name} is missing column(s) {', '.join(missing)}. The header must name "
                          f"image, text, label (and optionally audio); it has: {', '.join(header) or 'nothing'}.")
    col = {c: columns.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in columns}

    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            rows.append((reader.line_num, fields))
            if len(rows) > max_rows:
                raise MMDemoError(f"{name} has more than {max_rows:,} examples (the limit). "
                                  "Split it or sample it down, then upload again.")
    except csv.Error as exc:
        raise MMDemoError(f"{name}: row {reader.line_num} is not valid CSV ({exc}).") from None
    if not rows:
        raise MMDemoError(f"{name} has a header but no examples. Add one row per example.")

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
        img = aud = None
        try:
            img = _resolve_media(root, cell("image"), IMAGE_SUFFIXES, "Image") if cell("image") else None
            if img is None:
                problems.append("the image is empty")
        except MMDemoError as exc:
            problems.append(str(exc))
        if uses_audio:
            try:
                aud = _resolve_media(root, cell("audio"), AUDIO_SUFFIXES, "Audio") if cell("audio") else None
                if aud is None:
                    problems.append("the audio is empty (other rows have audio: every row needs it)")
            except MMDemoError as exc:
                problems.append(str(exc))
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
        raise MMDemoError(f"{name} has {len(classes):,} different labels; at most {max_classes} are supported. "
                          "Is the label column right? Merge rare labels, then upload again.")
    if len(classes) < 2:
        raise MMDemoError(f"{name} has only one label ({classes[0]!r}); a classifier needs at least two.")
    single = [str(c) for c, n in zip(classes, counts) if n < 2]
    if single:
        first_rows = {p[2]: p[0] for p in reversed(parsed)}
        listed = ", ".join(f"{s!r} (row {first_rows[s]})" for s in single[:10])
        raise MMDemoError(f"{name}: each label needs at least 2 examples (one to train on, one to validate); "
                          f"{len(single)} have only one: {listed}{' ...' if len(single) > 10 else ''}.")

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
                    notices.append(f"row {row}: audio {aud.name!r} is silent.")
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


def load_dataset_upload(files: Sequence[str | Path], work_dir: str | Path, *, audio_rate: int = 16000,
                        max_rows: int = MAX_ROWS, max_classes: int = MAX_CLASSES,
                        progress: Callable[[int, int], None] | None = None) -> Dataset:
    """A dataset from an upload: one zip holding a CSV and its media, or a CSV plus its
    media files (matched by file name, since browsers upload files without folders)."""
    paths = [Path(str(f)) for f in (files or []) if f]
    if not paths:
        raise MMDemoError("Upload a CSV (columns image, text, label[, audio]) with its media files, or one zip "
                          "holding both.")
    work_dir = Path(work_dir)
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    csvs = [p for p in paths if p.suffix.lower() == ".csv"]
    if zips:
        if len(paths) > 1:
            raise MMDemoError("Upload either one zip (CSV + media inside) or a CSV with its media files, not both.")
        extracted, notices = safe_extract_zip(zips[0], work_dir, max_files=2 * max_rows + 10,
                                              max_total_bytes=MAX_ZIP_BYTES,
                                              allowed_suffixes=IMAGE_SUFFIXES | AUDIO_SUFFIXES | {".csv"})
        csvs = [p for p in extracted if p.suffix.lower() == ".csv"]
        if len(csvs) != 1:
            found = ", ".join(p.name for p in csvs[:5]) or "none"
            raise MMDemoError(f"The zip {zips[0].name!r} must hold exactly one CSV (found: {found}).")
        ds = read_csv_dataset(csvs[0], audio_rate=audio_rate, max_rows=max_rows, max_classes=max_classes,
                              progress=progress)
        ds.notices[:0] = notices
        return ds
    if len(csvs) != 1:
        raise MMDemoError(f"Upload exactly one CSV with your media files (got {len(csvs)} CSV files).")
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
        ds.notices.append(f"Ignored {len(skipped)} file(s) that are neither CSV, image nor audio: "
                          f"{', '.join(skipped[:5])}.")
    return ds


def generated_dataset(task: str, n: int, seed: int = 0) -> Dataset:
    """A generated task from the toy world (the same one the bundled heads learned)."""
    from mmdemo.toyworld.tasks import make_examples, task_info

    info = task_info(task)
    if not 20 <= n <= MAX_ROWS:
        raise MMDemoError(f"Generate between 20 and {MAX_ROWS:,} examples (got {n}).")
    made = make_examples(task, n, seed=seed, split="train", image_size=64)
    examples = [LabeledExample(e.image, e.text, e.audio, e.label) for e in made]
    key = hashlib.sha256(f"toyworld:{task}:{n}:{seed}:64".encode()).hexdigest()
    return Dataset(examples, list(info.labels), info.modalities, task, key)


# --------------------------------------------------------------------------- features


def _feature_key(ds_hash: str, modalities: tuple[str, ...], label_names, clip, audio) -> str:
    ids = [clip.model_id, audio.model_id if audio is not None and "audio" in modalities else ""]
    return hashlib.sha256(json.dumps([ds_hash, list(modalities), list(label_names), ids]).encode()).hexdigest()[:32]


class FeatureCache:
    """Dataset features by (content hash, encoders): a couple in memory, all on disk.

    Image tokens are stored as float16 on disk: they are the bulk of the bytes and
    attention heads lose nothing measurable from it."""

    def __init__(self, cache_dir: str | Path | None, keep: int = 2, keep_files: int = 8):
        self.dir = Path(cache_dir) / "features" if cache_dir is not None else None
        self.keep, self.keep_files = keep, keep_files
        self._mem: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        if self.dir is None or not (self.dir / f"{key}.safetensors").is_file():
            return None
        try:
            fs = self._read(self.dir / f"{key}.safetensors")
        except Exception:
            return None  # a damaged cache file is only a cache: recompute
        self._remember(key, fs)
        return fs

    def put(self, key: str, fs) -> None:
        self._remember(key, fs)
        if self.dir is not None:
            from mmdemo.atomic import atomic_save_file

            tensors = {f"pooled.{m}": t for m, t in fs.pooled.items()}
            tensors.update({f"tokens.{m}": t.half() for m, t in fs.tokens.items()})
            tensors["labels"] = fs.labels
            try:
                atomic_save_file(tensors, self.dir / f"{key}.safetensors",
                                 {"label_names": json.dumps(fs.label_names)})
                self._prune()
            except OSError:
                pass  # a read-only or full disk only costs re-encoding next time

    def _prune(self) -> None:
        """Keep the most recently written datasets only: features of big datasets are large."""
        files = sorted(self.dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep_files:]:
            old.unlink(missing_ok=True)

    def _remember(self, key, fs) -> None:
        with self._lock:
            self._mem[key] = fs
            self._mem.move_to_end(key)
            while len(self._mem) > self.keep:
                self._mem.popitem(last=False)

    @staticmethod
    def _read(path: Path):
        from safetensors import safe_open
        from safetensors.torch import load_file

        from mmdemo.training.fusion_trainer import FeatureSet

        with safe_open(str(path), "pt") as f:
            names = json.loads(f.metadata()["label_names"])
        t = load_file(str(path))
        return FeatureSet(pooled={k[7:]: v.float() for k, v in t.items() if k.startswith("pooled.")},
                          tokens={k[7:]: v.float() for k, v in t.items() if k.startswith("tokens.")},
                          labels=t["labels"].long(), label_names=names)


def dataset_features(ds: Dataset, clip, audio=None, *, cache: FeatureCache | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None):
    """(FeatureSet, from_cache): features of every example, extracted in batches once."""
    import torch

    from mmdemo.tasks.fusion_features import extract_features
    from mmdemo.training.fusion_trainer import FeatureSet, TrainingCancelled

    if "audio" in ds.modalities and audio is None:
        raise MMDemoError("This dataset has audio, but the active profile has no audio model; "
                          "pick a profile with one (e.g. tiny) or drop the audio column.")
    key = _feature_key(ds.content_hash, ds.modalities, ds.label_names, clip, audio)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit, True
    parts = []
    for s in range(0, len(ds), FEATURE_BATCH):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("Training was cancelled while reading features; previously saved heads are unchanged.")
        parts.append(extract_features(ds.examples[s:s + FEATURE_BATCH], clip,
                                      audio if "audio" in ds.modalities else None, label_names=ds.label_names))
        if progress is not None:
            progress(min(s + FEATURE_BATCH, len(ds)), len(ds))
    fs = FeatureSet(pooled={m: torch.cat([p.pooled[m] for p in parts]) for m in parts[0].pooled},
                    tokens={m: torch.cat([p.tokens[m] for p in parts]) for m in parts[0].tokens},
                    labels=torch.cat([p.labels for p in parts]), label_names=list(ds.label_names))
    if cache is not None:
        cache.put(key, fs)
    return fs, False


# --------------------------------------------------------------------------- training


@dataclass
class LeaderRow:
    name: str  # the head kind, or "image only" etc. for a baseline
    kind: str
    modalities: tuple[str, ...]
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    best_epoch: int
    seconds: float
    baseline: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "modalities": list(self.modalities),
                "accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4),
                "per_class_recall": {k: round(v, 4) for k, v in self.per_class_recall.items()},
                "best_epoch": self.best_epoch, "seconds": self.seconds, "baseline": self.baseline}


@dataclass
class TrainReport:
    dataset: str
    n_examples: int
    n_train: int
    n_val: int
    label_names: list[str]
    modalities: tuple[str, ...]
    leaderboard: list[LeaderRow]  # best first
    winner: LeaderRow
    winner_head: object
    history: list[dict]
    features_cached: bool
    feature_seconds: float
    train_seconds: float
    notices: list[str] = field(default_factory=list)
    heads: dict = field(default_factory=dict)  # every trained fusion head by kind, for evaluation elsewhere
    saved_as: str | None = None
    saved_path: Path | None = None

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "examples": self.n_examples, "train": self.n_train, "validation": self.n_val,
                "labels": self.label_names, "modalities": list(self.modalities),
                "leaderboard": [r.to_dict() for r in self.leaderboard], "winner": self.winner.name,
                "winner_confusion": self.winner.confusion, "features_cached": self.features_cached,
                "feature_seconds": self.feature_seconds, "train_seconds": self.train_seconds,
                "saved_as": self.saved_as, "saved_path": str(self.saved_path) if self.saved_path else None,
                "notices": self.notices}


def _only(fs, modality: str):
    from mmdemo.training.fusion_trainer import FeatureSet

    return FeatureSet(pooled={modality: fs.pooled[modality]}, tokens={}, labels=fs.labels,
                      label_names=fs.label_names)


def check_training_options(kinds, epochs, lr) -> list[str]:
    """The head kinds to train (deduplicated), or an error naming the bad option."""
    kinds = list(dict.fromkeys(kinds or []))
    if not kinds:
        raise MMDemoError(f"Pick at least one head type ({', '.join(HEAD_KINDS)}).")
    unknown = [k for k in kinds if k not in HEAD_KINDS]
    if unknown:
        raise MMDemoError(f"Unknown head type(s) {', '.join(map(str, unknown))}. Available: {', '.join(HEAD_KINDS)}.")
    if epochs is None or not 1 <= int(epochs) <= 500:
        raise MMDemoError(f"Epochs must be between 1 and 500 (got {epochs}).")
    if lr is None or not 1e-6 <= float(lr) <= 1.0:
        raise MMDemoError(f"The learning rate must be between 1e-6 and 1 (got {lr}).")
    return kinds


def train_on_dataset(ds: Dataset, kinds: Sequence[str], clip, audio=None, *, epochs: int = DEFAULT_EPOCHS,
                     lr: float = 1e-3, baselines: bool = True, seed: int = 0, patience: int = 8,
                     cache: FeatureCache | None = None, progress: Callable[[dict], None] | None = None,
                     cancel: threading.Event | None = None) -> TrainReport:
    """Train each head kind (and single-modality baselines) on one shared stratified split.

    ``progress`` gets dicts: {"stage": "features", "done", "total"} while encoding, then
    the trainer's per-epoch rows ({"stage": "train", "kind", "epoch", ...})."""
    from mmdemo.training.fusion_trainer import stratified_split, train_heads

    kinds = check_training_options(kinds, epochs, lr)
    emit = progress or (lambda _row: None)
    t0 = time.perf_counter()
    fs, cached = dataset_features(ds, clip, audio, cache=cache, cancel=cancel,
                                  progress=lambda d, t: emit({"stage": "features", "done": d, "total": t}))
    feature_seconds = round(time.perf_counter() - t0, 2)
    split = stratified_split(fs.labels.numpy(), 0.2, seed, fs.label_names)
    history: list[dict] = []

    def on_epoch(name):
        def f(row):
            row = {**row, "stage": "train", "kind": name}
            history.append(row)
            emit(row)
        return f

    t1 = time.perf_counter()
    rows: list[LeaderRow] = []
    heads = {}
    for kind in kinds:
        (res,) = train_heads(fs, [kind], epochs=int(epochs), lr=float(lr), patience=patience, seed=seed,
                             split=split, progress=on_epoch(kind), cancel=cancel)
        heads[kind] = res.head
        rows.append(LeaderRow(kind, kind, tuple(fs.pooled), res.metrics["accuracy"], res.metrics["macro_f1"],
                              res.metrics["per_class_recall"], res.metrics["confusion"], res.best_epoch, res.seconds))
    if baselines:
        for m in fs.pooled:
            name = f"{m} only"
            (res,) = train_heads(_only(fs, m), ["concat"], epochs=int(epochs), lr=float(lr), patience=patience,
                                 seed=seed, split=split, progress=on_epoch(name), cancel=cancel)
            rows.append(LeaderRow(name, "concat", (m,), res.metrics["accuracy"], res.metrics["macro_f1"],
                                  res.metrics["per_class_recall"], res.metrics["confusion"], res.best_epoch,
                                  res.seconds, baseline=True))
    rows.sort(key=lambda r: (-r.accuracy, -r.macro_f1, r.baseline))
    winner = next(r for r in rows if not r.baseline)
    return TrainReport(ds.name, len(ds), len(split[0]), len(split[1]), list(fs.label_names), tuple(fs.pooled), rows,
                       winner, heads[winner.kind], history, cached, feature_seconds,
                       round(time.perf_counter() - t1, 2), list(ds.notices), heads)


def head_name(name: str | None, fallback: str) -> str:
    """A registry-safe head name: lowercase letters, digits, '-' and '_'."""
    raw = (name or "").strip() or fallback
    clean = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")[:60]
    if not clean:
        raise MMDemoError(f"Head name {name!r} has no usable characters; use letters, digits, '-' or '_'.")
    return clean


def _encoders(clip, audio, modalities) -> dict:
    enc = {"clip": clip.model_id}
    if "audio" in modalities and audio is not None:
        enc["audio"] = audio.model_id
    return enc


def check_save_name(registry, name: str) -> None:
    """Refuse to save over a built-in entry (bundled heads, encoders): only the user's own heads are replaced."""
    from mmdemo.paths import TINY_BUNDLE_DIR

    if name in registry.catalog.entries:
        spec = registry.catalog.entry(name)
        if spec.kind != "fusion" or (spec.weights is not None and spec.weights.resolve().is_relative_to(
                TINY_BUNDLE_DIR.resolve())):
            raise MMDemoError(f"{name!r} is a built-in model name; pick another name for your head.")


def write_head(report: TrainReport, path: str | Path, clip, audio=None) -> Path:
    """The winner as a head file (atomic: an earlier file at ``path`` survives a crash),
    its metadata naming the encoders it was trained on."""
    from mmdemo.models.fusion import save_head

    meta = {"labels": report.label_names, "modalities": list(report.modalities), "task": report.dataset,
            "encoder": _encoders(clip, audio, report.modalities),
            "validation": {"accuracy": report.winner.accuracy, "macro_f1": report.winner.macro_f1,
                           "n": report.n_val},
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    report.saved_path = save_head(path, report.winner_head, meta)
    return report.saved_path


def save_trained_head(report: TrainReport, registry, cache_dir: str | Path, name: str, clip, audio=None) -> Path:
    """Save the winner to ``cache_dir/heads/<name>.safetensors`` and register it."""
    from mmdemo.catalog import EntrySpec

    check_save_name(registry, name)
    path = write_head(report, Path(cache_dir) / "heads" / f"{name}.safetensors", clip, audio)
    registry.register(EntrySpec(name, "fusion", "mmdemo", weights=path,
                                description=f"Your {report.winner.kind} head for {report.dataset!r} "
                                            f"({len(report.label_names)} labels, validation accuracy "
                                            f"{report.winner.accuracy:.3f})."))
    report.saved_as, report.saved_path = name, path
    return path


def import_head(path: str | Path, registry, cache_dir: str | Path, name: str | None = None) -> str:
    """Validate an uploaded head file (safetensors + metadata; never unpickled), refuse it
    if it was trained on other encoders, then keep a copy and register it. Returns its name."""
    from mmdemo.atomic import atomic_write_bytes
    from mmdemo.catalog import EntrySpec
    from mmdemo.models.fusion import load_head
    from mmdemo.models.fusion_backend import check_encoders

    path = Path(path)
    _, meta = load_head(path)
    check_encoders(meta, registry, f"Head file {path.name!r}")
    name = head_name(name, path.stem)
    check_save_name(registry, name)
    dest = atomic_write_bytes(Path(cache_dir) / "heads" / f"{name}.safetensors", path.read_bytes())
    registry.register(EntrySpec(name, "fusion", "mmdemo", weights=dest,
                                description=f"Uploaded {meta['config']['kind']} head ({len(meta['labels'])} labels)."))
    return name


def register_saved_heads(registry, cache_dir: str | Path) -> list[str]:
    """Heads saved in earlier sessions, registered (not loaded) so they are listed again."""
    from mmdemo.catalog import EntrySpec

    folder = Path(cache_dir) / "heads"
    added = []
    if not folder.is_dir():
        return added
    for p in sorted(folder.glob("*.safetensors")):
        name = p.stem
        if name in registry.catalog.entries:
            continue
        registry.register(EntrySpec(name, "fusion", "mmdemo", weights=p, description="Your saved head."))
        added.append(name)
    return added


def resolve_head(registry, name_or_path: str | Path, *, allow_paths: bool = False):
    """A FusionHandle from a registry name or, where ``allow_paths`` (the CLI; never a web
    request, which must not read server files), a head file (validated, encoder-checked)."""
    from mmdemo.models.fusion_backend import FusionHandle, check_encoders

    key = str(name_or_path or "").strip()
    if not key:
        raise MMDemoError("Pick a head (or zero-shot).")
    if key in registry.catalog.entries:
        if registry.catalog.entry(key).kind != "fusion":
            raise MMDemoError(f"{key!r} is a {registry.catalog.entry(key).kind} model, not a fusion head.")
        return registry.get(key)
    path = Path(key)
    if allow_paths and (path.suffix == ".safetensors" or path.is_file()):
        from mmdemo.models.fusion import load_head

        head, meta = load_head(path)
        check_encoders(meta, registry, f"Head file {path.name!r}")
        return FusionHandle(path.stem, head, meta)
    names = ", ".join(registry.names(kind="fusion")) or "none"
    raise MMDemoError(f"No head named {key!r}. Available: {names}.")


# --------------------------------------------------------------------------- applying


def _ranked(probs: np.ndarray, labels: Sequence[str]) -> list[dict]:
    order = np.argsort(-probs, kind="stable")
    return [{"label": labels[i], "score": float(probs[i])} for i in order]


@dataclass
class Inputs:
    image: object | None  # PIL
    text: str | None
    wave: np.ndarray | None
    notices: list[str]


def read_inputs(image, text, audio, *, audio_rate: int = 16000) -> Inputs:
    notices: list[str] = []
    img = None
    if image is not None and not (isinstance(image, str) and not image):
        loaded = load_image(image, max_pixels=MAX_IMAGE_PIXELS)
        img, notices = loaded.image, notices + list(loaded.notices)
    txt = None
    if text is not None:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                text = bytes(text).decode("utf-8", errors="replace")
                notices.append("The text was not valid UTF-8; unreadable characters were replaced with \ufffd.")
        txt = " ".join(str(text).replace("\x00", "").split())
        if len(txt) > MAX_TEXT_CHARS:
            notices.append(f"The text was longer than {MAX_TEXT_CHARS} characters and was shortened.")
        txt = txt[:MAX_TEXT_CHARS] or None
    wave = None
    if audio is not None and not (isinstance(audio, str) and not audio):
        clip = load_audio(audio, target_sr=audio_rate, max_seconds=MAX_AUDIO_SECONDS)
        notices += list(clip.notices)
        wave = clip.wave
    return Inputs(img, txt, wave, notices)


@dataclass
class Classification:
    head: str
    kind: str
    modalities: tuple[str, ...]
    labels: list[dict]  # [{label, score}], best first
    ablation: list[dict]  # per modality: {modality, labels: [{label, score}] in head label order, top_drop}
    explanation: dict  # {"type": "modality_weights"|"gates"|"attention", "names": [...], "values": [...]}
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"head": self.head, "kind": self.kind, "modalities": list(self.modalities), "labels": self.labels,
                "ablation": self.ablation, "explanation": self.explanation, "notices": self.notices}


def _single_features(inputs: Inputs, modalities, clip, audio):
    import torch

    feats, tokens = {}, {}
    if "image" in modalities:
        pooled, tok = clip.encode_image_tokens([inputs.image])
        feats["image"], tokens["image"] = torch.from_numpy(pooled), torch.from_numpy(tok)
    if "text" in modalities:
        feats["text"] = torch.from_numpy(clip.encode_texts([inputs.text]))
    if "audio" in modalities:
        feats["audio"] = torch.from_numpy(audio.encode_waves([inputs.wave]))
    return feats, tokens


def _explanation(head, feats, tokens) -> dict:
    raw = head.explain(feats, tokens)
    if "modality_weights" in raw:
        return {"type": "modality_weights", "names": list(head.modalities),
                "values": [float(v) for v in np.asarray(raw["modality_weights"]).ravel()]}
    if "gates" in raw:
        return {"type": "gates", "names": [str(m) for m in raw["modalities"]],
                "values": [float(v) for v in np.asarray(raw["gates"])[0]]}
    if "attention" in raw:
        w = np.asarray(raw["attention"])[0]
        names = [str(m) for m in raw["key_modalities"]]
        per_mod = {m: float(w[[i for i, n in enumerate(names) if n == m]].sum()) for m in dict.fromkeys(names)}
        out = {"type": "attention", "names": list(per_mod), "values": list(per_mod.values())}
        img = [float(w[i]) for i, n in enumerate(names) if n == "image"]
        # Patch tokens come row by row; some encoders put a class token first.
        for skip in (0, 1):
            side = int(round(np.sqrt(max(len(img) - skip, 0))))
            if side > 1 and side * side == len(img) - skip:
                out["image_grid"] = np.asarray(img[skip:]).reshape(side, side).tolist()
                break
        return out
    return {"type": "none", "names": [], "values": []}


def classify(handle, image, text, audio_input, clip, audio=None) -> Classification:
    """Labels of one example from a fusion head, with each modality's ablation (its
    features replaced by zeros: L2-normalised features make zero 'no evidence') and
    the head's own weights/gates/attention where it has them."""
    import torch

    mods = tuple(handle.modalities)
    inputs = read_inputs(image, text, audio_input, audio_rate=getattr(audio, "sample_rate", 16000))
    missing = [m for m, v in (("image", inputs.image), ("text", inputs.text), ("audio", inputs.wave))
               if m in mods and v is None]
    if missing:
        raise MMDemoError(f"Head {handle.name!r} uses {', '.join(mods)}; add the missing {', '.join(missing)}.")
    if "audio" in mods and audio is None:
        raise MMDemoError(f"Head {handle.name!r} uses audio, but the active profile has no audio model.")
    notices = list(inputs.notices)
    if inputs.wave is not None and "audio" not in mods:
        notices.append(f"Head {handle.name!r} does not use audio; the clip was ignored.")
    feats, tokens = _single_features(inputs, mods, clip, audio)
    head = handle.head
    with torch.inference_mode():
        probs = torch.softmax(head(feats, tokens or None), -1)[0].float().numpy()
        ablation = []
        top = int(probs.argmax())
        for m in mods:
            f2 = {k: (torch.zeros_like(v) if k == m else v) for k, v in feats.items()}
            t2 = {k: (torch.zeros_like(v) if k == m else v) for k, v in tokens.items()}
            p = torch.softmax(head(f2, t2 or None), -1)[0].float().numpy()
            ablation.append({"modality": m, "labels": [{"label": lab, "score": float(s)}
                                                        for lab, s in zip(handle.labels, p)],
                             "top_drop": float(probs[top] - p[top])})
        explanation = _explanation(head, feats, tokens or None)
    return Classification(handle.name, handle.kind, mods, _ranked(probs, handle.labels), ablation, explanation, notices)


@dataclass
class ZeroShotResult:
    labels: list[dict]  # fused, best first
    per_modality: dict[str, list[dict]]  # each modality alone, in label order
    weights: dict[str, float]  # the weights used (normalised to sum 1)
    prompts: list[str]
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"labels": self.labels, "per_modality": self.per_modality, "weights": self.weights,
                "prompts": self.prompts, "notices": self.notices}


def zero_shot(image, text, audio_input, labels, clip, audio=None, *, weights: dict[str, float] | None = None,
              template: str = DEFAULT_TEMPLATE) -> ZeroShotResult:
    """Score typed labels against a weighted sum of the normalised modality embeddings.

    Fused score of label l = sum_m w_m cos(e_m, t_l) with w normalised to sum 1, i.e.
    the cosine of the weighted-sum embedding when every modality shares the text space
    (the tiny audio encoder was trained into tiny-clip's text space); probabilities are
    a softmax at the CLIP model's logit scale."""
    import torch

    names, notices = parse_text_lines(labels, what="labels", max_items=MAX_CLASSES, max_chars=MAX_LABEL_CHARS)
    template = (template or "").strip() or DEFAULT_TEMPLATE
    if template.count("{}") != 1:
        raise MMDemoError(f"The prompt template must contain {{}} exactly once (got {template!r}), e.g. 'a photo of {{}}'.")
    prompts = [template.format(n) for n in names]
    inputs = read_inputs(image, text, audio_input, audio_rate=getattr(audio, "sample_rate", 16000))
    notices += inputs.notices
    w = {m: float((weights or {}).get(m, 1.0)) for m in MODALITIES}
    if any(v < 0 for v in w.values()):
        raise MMDemoError("Modality weights must be zero or positive.")
    present = {"image": inputs.image is not None, "text": bool(inputs.text), "audio": inputs.wave is not None}
    if inputs.wave is not None and audio is None:
        notices.append("The active profile has no audio model; the clip was ignored.")
        present["audio"] = False
    used = {m: w[m] for m in MODALITIES if present[m] and w[m] > 0}
    if not any(present.values()):
        raise MMDemoError("Give at least one input: an image, a text or an audio clip.")
    if not used:
        raise MMDemoError("Every given input has weight 0; raise at least one weight.")
    for m in MODALITIES:
        if present[m] and w[m] == 0:
            notices.append(f"The {m} has weight 0 and does not count.")
    label_emb = clip.encode_texts(prompts)
    sims = {}
    if "image" in used:
        sims["image"] = clip.encode_images([inputs.image])[0] @ label_emb.T
    if "text" in used:
        sims["text"] = clip.encode_texts([inputs.text])[0] @ label_emb.T
    if "audio" in used:
        sims["audio"] = audio.encode_waves([inputs.wave])[0] @ audio.encode_texts(prompts).T
    total = sum(used.values())
    norm_w = {m: used[m] / total for m in used}
    fused = sum(norm_w[m] * sims[m] for m in used)
    scale = float(clip.logit_scale)

    def probs(s):
        return torch.softmax(torch.as_tensor(scale * np.asarray(s, np.float32)), -1).numpy()

    per = {m: [{"label": n, "score": float(p)} for n, p in zip(names, probs(sims[m]))] for m in used}
    return ZeroShotResult(_ranked(probs(fused), names), per, {m: round(v, 4) for m, v in norm_w.items()},
                          prompts, notices)


# --------------------------------------------------------------------------- examples


def generated_examples(out_dir: str | Path, per_task: int = 3, seed: int = 2024) -> list[dict]:
    """A few rendered examples of each generated task as files (PNG, WAV) for a gallery:
    [{task, image, text, audio, label, caption, objects, zero_shot_labels}]; files are
    written only when missing (the generator is seeded, so they never go stale)."""
    import soundfile as sf
    from PIL import Image

    from mmdemo.atomic import atomic_write_bytes
    from mmdemo.toyworld import scenes
    from mmdemo.toyworld.tasks import TASKS, make_examples

    out_dir = Path(out_dir)
    rows = []
    for task, info in TASKS.items():
        n = max(per_task, len(info.labels)) if "audio" in info.modalities else per_task
        for i, e in enumerate(make_examples(task, n, seed=seed, split="train", image_size=64)):
            img = out_dir / f"{task}-{i}.png"
            if not img.is_file():
                buf = io.BytesIO()
                Image.fromarray(np.asarray(e.image)).save(buf, format="PNG")
                atomic_write_bytes(img, buf.getvalue())
            wav = None
            if e.audio is not None:
                wav = out_dir / f"{task}-{i}.wav"
                if not wav.is_file():
                    buf = io.BytesIO()
                    sf.write(buf, np.asarray(e.audio, np.float32), 16000, format="WAV", subtype="PCM_16")
                    atomic_write_bytes(wav, buf.getvalue())
            present = list(dict.fromkeys(f"{o.colour} {o.shape}" for o in e.scene.objects))
            rng = np.random.default_rng(seed + i)
            others = [p for p in (f"{c} {s}" for c in scenes.COLOURS for s in scenes.SHAPES) if p not in present]
            choices = present + [others[k] for k in rng.choice(len(others), 4, replace=False)]
            rows.append({"task": task, "image": str(img), "text": e.text, "audio": str(wav) if wav else None,
                         "label": e.label, "caption": scenes.caption(e.scene),
                         "zero_shot_labels": sorted(choices), "objects": present})
    return rows
