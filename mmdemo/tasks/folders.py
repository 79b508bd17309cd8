"""Whole folders: one task over every file of folders or zips, in batches, one row per file.

Tasks: ``caption`` (generate), ``rank`` (rank candidate captions; none given: the
folder's own ``captions.json``, else the built-in bank), ``zero_shot`` (images against
labels), ``match_audio`` (sounds against labels) and ``classify`` (images, with a text
and for some heads a sound, through a fusion head). Files are decoded and encoded
``batch_size`` at a time through the handles' batched calls: the candidate texts are
encoded once per run, not once per file, which is what makes a folder faster than a
request per file (see bench/bench_folders.py).

A file that can't be read is one row with its error, never the end of the run; the
caller may stop iterating :meth:`FolderRun.batches` at any point and keep the rows it
has (the UI's Stop button). Results go out as CSV or JSON (:func:`write_results`),
written atomically so a reader never sees half a file. No gradio, no torch here.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mmdemo.atomic import atomic_write_text
from mmdemo.errors import MMDemoError, Notice
from mmdemo.media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, load_audio, load_image, parse_text_lines
from mmdemo.models.decode_options import DecodeOptions
from mmdemo.scores import softmax
from mmdemo.tasks import prompts
from mmdemo.tasks.audio import MAX_CLIP_SECONDS, window_bounds
from mmdemo.head_inputs import encode_for_heads, tokens_read_by, tower_for
from mmdemo.tasks.classify.apply import DEFAULT_TEMPLATE
from mmdemo.tasks.classify.datasets import MAX_AUDIO_SECONDS, MAX_CLASSES, MAX_IMAGE_PIXELS, MAX_LABEL_CHARS
from mmdemo.tasks.gallery_files import gallery_files
from mmdemo.tasks.image.captioning import caption_bank
from mmdemo.tasks.image.inputs import MAX_QUERY_CHARS, parse_texts

TASKS = {"caption": "Caption (generate)", "rank": "Rank captions", "zero_shot": "Zero-shot classify",
         "match_audio": "Match audio", "classify": "Classify with a head"}
MAX_FOLDER_FILES = 2000
BATCH_SIZE = 32
COLUMNS = ("file", "answer", "score", "caption", "error")


@dataclass
class FolderRow:
    """One file's result: ``answer`` and ``score`` (a probability; for ``caption``, the
    captioner's cosine similarity of the image to its caption), or ``error``; ``caption``
    is the file's caption from ``captions.json`` (blank without one)."""

    file: str
    answer: str = ""
    score: float | None = None
    caption: str = ""
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def cells(self) -> list:
        return [self.file, self.answer, None if self.score is None else round(self.score, 4), self.caption, self.error]


@dataclass
class FolderOptions:
    """What the chosen task needs: ``texts`` are the candidate captions (rank) or the labels
    (zero_shot, match_audio); ``template`` the prompt template(s), one per line, ``{}`` for
    the label (several: averaged per label); ``head``
    and ``text`` (the text every image goes with; blank: each file's caption) for classify."""

    texts: str | Sequence[str] | None = None
    template: str | Sequence[str] | None = None
    head: Any = None  # a FusionHandle (resolved by the caller: registry or the user's own)
    text: str | None = None
    method: str = "beam"
    max_length: int = 20
    num_beams: int = 3


@dataclass
class FolderModels:
    """The handles a run may use; only the task's own are touched (lazy handles load then)."""

    clip: Any = None
    captioner: Any = None
    audio: Any = None
    tokens: Any = None  # the profile's token tower for a head's image tokens (None: the clip's)

    @classmethod
    def for_task(cls, registry, task: str, head=None) -> "FolderModels":
        """The handles ``task`` needs from ``registry`` (lazy: nothing loads before a file is read),
        the one place the UI and the CLI pick them."""
        uses_audio = task == "match_audio" or (head is not None and "audio" in head.modalities)
        return cls(clip=registry.for_slot("clip", lazy=True) if task in ("rank", "zero_shot", "classify") else None,
                   captioner=registry.for_slot("captioner", lazy=True) if task == "caption" else None,
                   audio=registry.for_slot("audio", lazy=True) if uses_audio and registry.profile.audio else None,
                   tokens=registry.for_slot("tokens", lazy=True) if task == "classify" else None)


@dataclass
class _Item:
    path: Path
    name: str
    caption: str
    partner: Path | None = None  # classify: the sound of the same name beside the image


def parse_task(task: str | None) -> str:
    """A task key from a key or its label ("Rank captions" -> "rank")."""
    key = str(task or "").strip()
    for k, label in TASKS.items():
        if key in (k, label):
            return k
    raise MMDemoError("folder_task_unknown", f"Unknown task {key!r}; pick one of: {', '.join(TASKS.values())}.")


def _display_names(paths: list[Path], roots: list[Path]) -> list[str]:
    """A file inside a folder or zip given is named by its path in there; a file given
    alone by its name (never by an upload's or extraction's temp folder)."""
    def name(p: Path) -> str:
        here = p.resolve()
        root = next((r for r in roots if here.is_relative_to(r)), None)
        return here.relative_to(root).as_posix() if root is not None else p.name

    return [name(p) for p in paths]


class FolderRun:
    """One task over ``sources`` (files, folders, zips). Construction checks the options
    and lists the files (raising MMDemoError for what no file can fix: no labels, an empty
    or broken zip, too many files); :meth:`batches` then yields rows batch by batch."""

    def __init__(self, sources: Any, task: str, options: FolderOptions, models: FolderModels, *,
                 extract_dir: Path | None = None, max_files: int = MAX_FOLDER_FILES, batch_size: int = BATCH_SIZE):
        self.task, self.options, self.models = parse_task(task), options, models
        self.batch_size = max(1, int(batch_size))
        self.notices: list[str] = []
        self._check_options()
        uses_audio = self.task == "match_audio" or (self.task == "classify" and "audio" in options.head.modalities)
        wanted = AUDIO_SUFFIXES if self.task == "match_audio" else (
            IMAGE_SUFFIXES | AUDIO_SUFFIXES if uses_audio else IMAGE_SUFFIXES)
        what = "sounds" if self.task == "match_audio" else "images"
        if not sources or (isinstance(sources, (list, tuple)) and not any(s is not None for s in sources)):
            raise MMDemoError("folder_empty", f"Upload a zip (or several files) of {what}, or give a folder.")
        paths, self.captions, notices = gallery_files(
            [s for s in sources if s is not None] if isinstance(sources, (list, tuple)) else sources,
            suffixes=wanted, max_files=max_files, what=what, extract_dir=extract_dir)
        self.notices += notices
        given = [Path(f) for f in (sources if isinstance(sources, (list, tuple)) else [sources])
                 if isinstance(f, (str, Path))]
        roots = [p.resolve() for p in given if p.is_dir()]
        if extract_dir is not None and Path(extract_dir).is_dir():  # one folder per zip in there
            roots += [d.resolve() for d in Path(extract_dir).iterdir() if d.is_dir()]
        self.items = self._items(paths, _display_names(paths, roots), uses_audio and self.task == "classify")
        self._prepared = False

    # ------------------------------------------------------------------ setup

    def _check_options(self) -> None:
        o = self.options
        if self.task == "match_audio" and self.models.audio is None:
            raise MMDemoError("audio_model_missing", "The active profile has no audio model; pick a profile with "
                                                     "one (e.g. tiny) to match sounds.")
        if self.task == "caption":
            def as_int(v):
                return int(v) if isinstance(v, float) and v.is_integer() else v  # sliders send 3.0

            self.decode = DecodeOptions(method=str(o.method or "beam").strip().lower(), num_beams=as_int(o.num_beams),
                                        max_length=as_int(o.max_length), num_return=1)
            self.decode.validate({"num_beams": "the number of beams", "max_length": "the max length"})
        elif self.task in ("zero_shot", "match_audio"):
            self.labels, notices = parse_text_lines(o.texts, what="labels", max_items=MAX_CLASSES,
                                                    max_chars=MAX_LABEL_CHARS)
            self.notices += notices
            # Several templates are averaged per label (prompt ensembles, as the tabs do);
            # none: the labels as typed for sounds, the Classify tab's default for images.
            sounds = self.task == "match_audio"
            self.templates = (prompts.parse_templates(o.template, modality="audio" if sounds else "image")
                              or ["{}" if sounds else DEFAULT_TEMPLATE])
        elif self.task == "classify":
            if o.head is None:
                raise MMDemoError("head_missing", "Pick a fusion head to classify with.")
            if "audio" in o.head.modalities and self.models.audio is None:
                raise MMDemoError("audio_model_missing", f"Head {o.head.name!r} uses audio, but the active profile "
                                                         "has no audio model.")
            self.text = " ".join(str(o.text or "").split())

    def _items(self, paths: list[Path], shown: list[str], pair_sounds: bool) -> list[_Item]:
        names = dict(zip(paths, shown))
        if not pair_sounds:
            return [_Item(p, names[p], self.captions.get(p.name, "")) for p in paths]
        sounds = {(p.parent, p.stem): p for p in paths if p.suffix.lower() in AUDIO_SUFFIXES}
        items = [_Item(p, names[p], self.captions.get(p.name, ""), sounds.pop((p.parent, p.stem), None))
                 for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
        if sounds:
            self.notices.append(Notice("sounds_unpaired", f"{len(sounds)} sound(s) had no image of the same name "
                                                          "beside them and were not used."))
        if not items:
            raise MMDemoError("no_files_found", "No images found: the head classifies images (each with the sound "
                                                "of the same name). Upload PNG, JPEG, WebP... files or a zip of them.")
        return items

    def _prepare(self) -> None:
        """Encode the texts every file is scored against, once (loads the model)."""
        m, o = self.models, self.options
        if self.task == "rank":
            blank = o.texts is None or (isinstance(o.texts, str) and not o.texts.strip())
            if blank:
                # The folder's own captions are the natural candidates: each file's row then
                # says whether its caption ranked first.
                # Only the captions of the files in this run (at most one per file), each cut
                # as a typed query is: a captions.json may name far more files than the upload.
                own = {item.caption[:MAX_QUERY_CHARS] for item in self.items if item.caption.strip()}
                self.labels = sorted(own) or caption_bank(m.clip)
            else:
                self.labels, notices = parse_texts(o.texts, "captions")
                self.notices += notices
            self.text_emb = np.asarray(m.clip.encode_texts(self.labels), np.float32)
        elif self.task in ("zero_shot", "match_audio"):
            encoder = m.clip if self.task == "zero_shot" else m.audio
            self.text_emb = prompts.ensemble_embeddings(encoder.encode_texts, self.labels, self.templates)
        self._prepared = True

    # ------------------------------------------------------------------ running

    def __len__(self) -> int:
        return len(self.items)

    def batches(self) -> Iterator[list[FolderRow]]:
        """Rows, ``batch_size`` files at a time, in file order; stop iterating to cancel."""
        if not self._prepared:
            self._prepare()
        for start in range(0, len(self.items), self.batch_size):
            yield self._batch(self.items[start:start + self.batch_size])

    def rows(self) -> list[FolderRow]:
        return [row for batch in self.batches() for row in batch]

    def _batch(self, items: list[_Item]) -> list[FolderRow]:
        rows = {id(it): FolderRow(it.name, caption=it.caption) for it in items}
        loaded = []
        for it in items:
            try:
                loaded.append((it, self._load(it)))
            except MMDemoError as exc:
                rows[id(it)].error = str(exc)
        if loaded:
            try:
                answers = self._answer([x for _, x in loaded])
            except MMDemoError:
                # One input the batch can't take (e.g. a model refusing it) must not fail
                # the others: answer file by file, and only that one gets the error.
                answers = []
                for _, x in loaded:
                    try:
                        answers += self._answer([x])
                    except MMDemoError as exc:
                        answers.append(exc)
            for (it, _), ans in zip(loaded, answers):
                if isinstance(ans, MMDemoError):
                    rows[id(it)].error = str(ans)
                else:
                    rows[id(it)].answer, rows[id(it)].score = ans
        return [rows[id(it)] for it in items]

    def _load(self, it: _Item):
        if self.task == "match_audio":
            return load_audio(it.path, target_sr=lambda: self.models.audio.sample_rate,
                              max_seconds=MAX_CLIP_SECONDS).wave
        image = load_image(it.path, max_pixels=MAX_IMAGE_PIXELS).image
        if self.task != "classify":
            return image
        mods = self.options.head.modalities
        text = self.text or it.caption
        if "text" in mods and not text:
            raise MMDemoError("text_missing", f"No text for {it.name!r}: type the text every image goes with, or "
                                              "add the file's caption to a captions.json beside it.")
        wave = None
        if "audio" in mods:
            if it.partner is None:
                raise MMDemoError("audio_missing", f"Head {self.options.head.name!r} uses audio: put a sound named "
                                                   f"{Path(it.name).stem}.wav (or .flac, .mp3...) beside {it.name!r}.")
            wave = load_audio(it.partner, target_sr=lambda: self.models.audio.sample_rate,
                              max_seconds=MAX_AUDIO_SECONDS).wave
        return image, text, wave

    def _answer(self, inputs: list) -> list[tuple[str, float]]:
        m = self.models
        if self.task == "caption":
            captions = [(c[0] if c else "").strip() for c in m.captioner.generate(inputs, self.decode)]
            img = np.asarray(m.captioner.encode_images(inputs), np.float32)
            txt = np.asarray(m.captioner.encode_texts([c or " " for c in captions]), np.float32)
            return [(c, float(s)) for c, s in zip(captions, (img * txt).sum(axis=1))]
        if self.task in ("rank", "zero_shot"):
            probs = np.asarray(m.clip.zero_shot(np.asarray(m.clip.encode_images(inputs), np.float32), self.text_emb))
            return self._best(probs)
        if self.task == "match_audio":
            return self._best(self._match(inputs))
        return self._classify(inputs)

    def _best(self, probs: np.ndarray) -> list[tuple[str, float]]:
        top = probs.argmax(axis=1)
        return [(self.labels[int(i)], float(p[int(i)])) for i, p in zip(top, probs)]

    def _match(self, waves: list[np.ndarray]) -> np.ndarray:
        """Label probabilities per clip: every clip's windows go through one encode call;
        a label's score is its best window's (as match_audio scores one clip)."""
        audio = self.models.audio
        spans, windows = [], []
        for wave in waves:
            bounds = window_bounds(len(wave), audio.sample_rate, audio.window_seconds)
            spans.append((len(windows), len(windows) + len(bounds)))
            windows += [wave[s:e] for s, e in bounds]
        sim = np.asarray(audio.encode_waves(windows), np.float32) @ self.text_emb.T
        best = np.stack([sim[a:b].max(axis=0) for a, b in spans])
        return softmax(float(audio.logit_scale) * best)

    def _classify(self, inputs: list) -> list[tuple[str, float]]:
        m, head = self.models, self.options.head
        enc = encode_for_heads(head.modalities, m.clip, m.audio, tower_for(head, m.tokens),
                               images=[x[0] for x in inputs], texts=[x[1] for x in inputs],
                               waves=[x[2] for x in inputs])
        probs = np.asarray(head.predict(enc.pooled, tokens_read_by(head, enc.tokens) or None))
        top = probs.argmax(axis=1)
        return [(head.labels[int(i)], float(p[int(i)])) for i, p in zip(top, probs)]

    def summary(self, rows: Sequence[FolderRow], *, complete: bool) -> dict:
        """What the JSON download holds besides the rows."""
        out = {"task": self.task, "files": len(self.items), "done": len(rows),
               "errors": sum(1 for r in rows if r.error), "complete": complete,
               "notices": [str(n) for n in dict.fromkeys(self.notices)]}
        # What the answers were chosen from, so a results file can be read on its own.
        for key in ("labels", "templates"):
            if hasattr(self, key):
                out[key] = list(getattr(self, key))
        if self.task == "classify":
            out["head"] = self.options.head.name
        return out


# --------------------------------------------------------------------------- export

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    # File names and captions are the user's: a spreadsheet would run a cell that starts
    # like a formula (CSV injection), so such text cells get a leading quote.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def rows_csv(rows: Sequence[FolderRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows([_csv_cell(v) for v in r.cells()] for r in rows)
    return buf.getvalue()


def write_results(path: str | Path, rows: Sequence[FolderRow], meta: dict | None = None) -> Path:
    """``rows`` as CSV (a ``.csv`` path) or JSON (``{...meta, "rows": [...]}``), atomically:
    rewritten after every batch, a download taken mid-run holds whole rows only."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return atomic_write_text(path, rows_csv(rows))
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps({**(meta or {}), "rows": [r.to_dict() for r in rows]},
                                                  indent=1, ensure_ascii=False) + "\n")
    raise MMDemoError("results_format_unknown", f"Results go to a .csv or .json file, not {path.name!r}.")


def run_to_files(run: FolderRun, outs: Sequence[str | Path],
                 on_batch: Callable[[list[FolderRow]], None] | None = None) -> list[FolderRow]:
    """Run to the end, rewriting every file in ``outs`` after each batch (what the CLI does)."""
    rows: list[FolderRow] = []
    for batch in run.batches():
        rows += batch
        for out in outs:
            write_results(out, rows, run.summary(rows, complete=len(rows) == len(run)))
        if on_batch is not None:
            on_batch(batch)
    return rows


__all__ = ["TASKS", "COLUMNS", "MAX_FOLDER_FILES", "BATCH_SIZE", "FolderRow", "FolderOptions", "FolderModels",
           "FolderRun", "parse_task", "rows_csv", "write_results", "run_to_files"]
