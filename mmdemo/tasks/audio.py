"""Audio tasks: match a clip against text, search sounds by text and texts by sound.

Pure functions over an audio handle (``registry.for_slot("audio")``) that only
uses its public interface (``sample_rate``, ``window_seconds``, ``encode_waves``,
``encode_texts``, ``mel``, ``logit_scale``, ``model_id``), so a real audio-text
model (e.g. CLAP) can replace the tiny encoder without touching this module.

Models see fixed windows (4 s for the tiny encoder). Longer clips are split into
overlapping windows and each text's score is its best window's score: a clip
"contains" a sound if any part of it does, and the UI can show where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.hashing import file_hash
from mmdemo.index import EmbeddingCache
from mmdemo.media import AUDIO_SUFFIXES, AudioClip, load_audio, parse_text_lines, read_captions
from mmdemo.scores import softmax
from mmdemo.tasks import prompts
from mmdemo.tasks.gallery_files import gallery_files, skipped_notice
from mmdemo.tasks.saved_index import SavedIndex, check_index_model, search_sounds
from mmdemo.tasks.domain_notices import clip_notice
from mmdemo.tasks.text_notices import unknown_words_notice
from mmdemo.toyworld import sounds
from mmdemo.toyworld.galleries import example_gallery

HOP_SECONDS = 2.0
MAX_CLIP_SECONDS = 60.0  # the clip matched against text; 29 windows at most
MAX_GALLERY_SECONDS = 30.0  # per gallery sound
MAX_GALLERY_FILES = 200
MAX_LABELS = 100
MAX_TEMPLATES = prompts.MAX_TEMPLATES
DEFAULT_TEMPLATES = ("the sound of {}",)
# What a gallery tells about each of its sounds; other clip notices (e.g. resampled)
# would only repeat for every file.
_GALLERY_CLIP_NOTICES = frozenset({"audio_too_long", "audio_silent"})

__all__ = [
    "AudioMatch", "AudioGallery", "TextSearch", "Windowed",
    "window_bounds", "parse_templates", "encode_labels", "embed_clip",
    "match_audio", "build_gallery", "search_gallery", "search_texts_by_audio",
    "default_gallery_files", "read_captions", "example_clip", "example_texts", "unknown_words_notice",
]


# --------------------------------------------------------------------------- windows


def window_bounds(n_samples: int, sample_rate: int, window_seconds: float,
                  hop_seconds: float = HOP_SECONDS) -> list[tuple[int, int]]:
    """Sample ranges of the windows covering a clip; the last one ends with the clip.

    A clip no longer than one window is one window. Otherwise windows start every
    ``hop_seconds`` and one more is aligned to the end, so the tail is never lost.
    """
    if hop_seconds <= 0:
        raise MMDemoError("window_hop_invalid", f"The window hop must be positive (got {hop_seconds:g} s).")
    win = int(round(window_seconds * sample_rate))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    if n_samples <= win:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - win, hop))
    if starts[-1] != n_samples - win:
        starts.append(n_samples - win)
    return [(s, s + win) for s in starts]


@dataclass
class Windowed:
    """One clip cut into the windows the model sees, with their embeddings."""

    clip: AudioClip
    bounds: list[tuple[int, int]]  # sample ranges
    embeddings: np.ndarray  # [W, D], normalised

    @property
    def seconds(self) -> list[tuple[float, float]]:
        sr = self.clip.sample_rate
        return [(s / sr, e / sr) for s, e in self.bounds]


def _check_rate(clip: AudioClip, audio) -> None:
    if clip.sample_rate != audio.sample_rate:  # load_audio resamples; this guards callers who didn't
        raise MMDemoError("sample_rate_mismatch",
                          f"Audio {clip.name!r} is at {clip.sample_rate} Hz; the model needs {audio.sample_rate} Hz.")


def embed_clip(audio, clip: AudioClip, hop_seconds: float = HOP_SECONDS, batch_size: int = 64) -> Windowed:
    _check_rate(clip, audio)
    bounds = window_bounds(len(clip.wave), clip.sample_rate, audio.window_seconds, hop_seconds)
    waves = [clip.wave[s:e] for s, e in bounds]
    return Windowed(clip, bounds, np.asarray(audio.encode_waves(waves, batch_size=batch_size), np.float32))


# --------------------------------------------------------------------------- text side


def parse_templates(templates: str | Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Prompt templates, one per line, ``{}`` standing for the label (checked by
    :func:`mmdemo.tasks.prompts.parse_templates`). Blank = labels as typed."""
    return prompts.parse_templates(templates, modality="audio") or ["{}"], []


def encode_labels(audio, labels: Sequence[str], templates: Sequence[str] = ("{}",)) -> np.ndarray:
    """[L, D] text embeddings; several templates are averaged per label (CLIP's prompt
    ensembling: :func:`mmdemo.tasks.prompts.ensemble_embeddings`)."""
    return prompts.ensemble_embeddings(audio.encode_texts, labels, templates)


def _load(source: Any, name: str | None, audio, max_seconds: float) -> AudioClip:
    if source is None or (isinstance(source, str) and not source.strip()):
        raise MMDemoError("audio_missing", "Upload or record an audio clip first.")
    # The rate is asked once the clip decoded: a broken upload never loads the model.
    return load_audio(source, name=name, target_sr=lambda: audio.sample_rate, max_seconds=max_seconds)


# --------------------------------------------------------------------------- match a clip


@dataclass
class AudioMatch:
    """A clip scored against labels. ``labels`` is ranked; the arrays keep input order."""

    name: str
    duration: float
    sample_rate: int
    original_sample_rate: int
    channels: int
    labels: list[dict]  # [{label, score}] ranked; scores are probabilities summing to 1
    label_order: list[str]  # the labels as entered (columns of ``similarity``)
    windows: list[tuple[float, float]]  # seconds
    similarity: np.ndarray  # [W, L] cosine similarity of each window to each label
    best: list[dict]  # ranked like ``labels``: {label, score, similarity, start, end}
    templates: list[str]
    wave: np.ndarray  # mono at sample_rate, what was scored
    mel: np.ndarray  # the log-mel the model saw in the top label's best window
    mel_window: tuple[float, float]
    window_seconds: float  # the span ``mel`` covers, padded past a short clip's end as the model pads it
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "duration": round(self.duration, 3), "sample_rate": self.original_sample_rate,
                "channels": self.channels, "templates": self.templates, "labels": self.labels, "best_windows": self.best,
                "windows": [[round(a, 3), round(b, 3)] for a, b in self.windows], "notices": self.notices}


def match_audio(source: Any, labels: str | Sequence[str], audio, *, templates: str | Sequence[str] | None = None,
                name: str | None = None, hop_seconds: float = HOP_SECONDS,
                max_seconds: float = MAX_CLIP_SECONDS) -> AudioMatch:
    """Rank ``labels`` for a clip (path, bytes or (sr, array)).

    Each label's score is its best window's cosine similarity; probabilities are
    the softmax of those at the model's logit scale.
    """
    label_list, notices = parse_text_lines(labels, what="labels", max_items=MAX_LABELS)
    tpls, t_notices = parse_templates(templates)
    clip = _load(source, name, audio, max_seconds)
    notices = clip.notices + notices + t_notices + unknown_words_notice(audio, label_list + tpls)
    windowed = embed_clip(audio, clip, hop_seconds)
    notices += clip_notice(audio, clip.wave)
    text = encode_labels(audio, label_list, tpls)
    sim = windowed.embeddings @ text.T  # [W, L]
    best_w = sim.argmax(axis=0)
    best_sim = sim.max(axis=0)
    probs = softmax(float(audio.logit_scale) * best_sim)
    order = np.argsort(-probs, kind="stable")
    secs = windowed.seconds
    ranked = [{"label": label_list[i], "score": float(probs[i])} for i in order]
    best = [{"label": label_list[i], "score": float(probs[i]), "similarity": float(best_sim[i]),
             "start": round(secs[best_w[i]][0], 3), "end": round(secs[best_w[i]][1], 3)} for i in order]
    top_window = windowed.bounds[best_w[order[0]]]
    return AudioMatch(
        name=clip.name, duration=clip.duration, sample_rate=clip.sample_rate,
        original_sample_rate=clip.original_sample_rate, channels=clip.channels,
        labels=ranked, label_order=label_list, windows=secs, similarity=sim, best=best,
        templates=tpls, wave=clip.wave, mel=np.asarray(audio.mel(clip.wave[top_window[0]:top_window[1]])),
        mel_window=secs[best_w[order[0]]], window_seconds=float(audio.window_seconds), notices=notices,
    )


# --------------------------------------------------------------------------- texts by audio


@dataclass
class TextSearch:
    name: str
    duration: float
    hits: list[dict]  # [{label, score}] best first; score = best window's cosine similarity
    notices: list[str] = field(default_factory=list)


def search_texts_by_audio(source: Any, texts: str | Sequence[str], audio, *, k: int = 5, name: str | None = None,
                          hop_seconds: float = HOP_SECONDS, max_seconds: float = MAX_CLIP_SECONDS) -> TextSearch:
    """The ``k`` texts closest to a clip (cosine similarity of its best-matching window)."""
    items, notices = parse_text_lines(texts, what="texts", max_items=1000)
    clip = _load(source, name, audio, max_seconds)
    windowed = embed_clip(audio, clip, hop_seconds)
    sim = (windowed.embeddings @ encode_labels(audio, items).T).max(axis=0)
    order = np.argsort(-sim, kind="stable")[: max(1, int(k))]
    return TextSearch(clip.name, clip.duration, [{"label": items[i], "score": float(sim[i])} for i in order],
                      clip.notices + notices + unknown_words_notice(audio, items)
                      + clip_notice(audio, clip.wave))


# --------------------------------------------------------------------------- gallery


@dataclass
class AudioGallery:
    """Sounds embedded window by window; a sound's score is its best window's."""

    model_id: str
    items: list[dict]  # {name, path, duration, caption}
    embeddings: np.ndarray  # [total windows, D]
    window_owner: np.ndarray  # [total windows] -> item index
    window_seconds: list[tuple[float, float]]
    notices: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def build_gallery(files: Any, audio, *, captions: dict[str, str] | None = None, hop_seconds: float = HOP_SECONDS,
                  max_seconds: float = MAX_GALLERY_SECONDS, max_files: int = MAX_GALLERY_FILES,
                  cache_dir: Path | None = None, extract_dir: Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> AudioGallery:
    """Embed sound files, folders or zips. Unreadable files are skipped with a notice.

    With ``cache_dir``, window embeddings are cached by file content and model, so
    searching the same sounds again encodes nothing.
    """
    paths, captions, notices = gallery_files(files, suffixes=AUDIO_SUFFIXES, max_files=max_files, what="sounds",
                                             extract_dir=extract_dir, captions=captions)
    items, keys, waves, owners, secs, skipped = [], [], [], [], [], []
    for n, path in enumerate(paths):
        try:
            clip = load_audio(path, target_sr=audio.sample_rate, max_seconds=max_seconds)
        except MMDemoError as exc:
            skipped.append(str(exc))
            continue
        notices += [m for m in clip.notices if getattr(m, "code", None) in _GALLERY_CLIP_NOTICES]
        digest = file_hash(path) if cache_dir is not None else ""
        idx = len(items)
        items.append({"name": path.name, "path": str(path), "duration": round(clip.duration, 3),
                      "caption": captions.get(path.name, "")})
        for s, e in window_bounds(len(clip.wave), clip.sample_rate, audio.window_seconds, hop_seconds):
            keys.append(f"{digest}:{hop_seconds:g}:{s}:{e}")
            waves.append(clip.wave[s:e])
            owners.append(idx)
            secs.append((s / clip.sample_rate, e / clip.sample_rate))
        if progress:
            progress(n + 1, len(paths))
    if skipped:
        notices.append(skipped_notice(skipped, "sound(s)"))
    if not items:
        raise MMDemoError("gallery_unreadable", "None of the sounds could be read. " + (
            skipped[0] if skipped else "Upload WAV, FLAC, OGG or MP3 files."))

    def compute(positions: list[int]) -> np.ndarray:
        return np.asarray(audio.encode_waves([waves[i] for i in positions]), np.float32)

    if cache_dir is not None:
        emb, _ = EmbeddingCache(cache_dir, audio.model_id).get_or_compute(keys, compute)
    else:
        emb = compute(list(range(len(waves))))
    return AudioGallery(audio.model_id, items, emb, np.asarray(owners), secs, notices)


def search_gallery(gallery: AudioGallery | SavedIndex, query: str, audio, *, k: int = 5) -> list[dict]:
    """The ``k`` sounds closest to a text: [{label, score, caption, path, duration, start, end}].

    ``gallery`` may be a saved audio index (``mmdemo.tasks.saved_index``): searched through
    the index, one hit per sound (its best window), as here."""
    query = (query or "").strip()
    if not query:
        raise MMDemoError("query_empty", "Type what to search for (e.g. 'a rising chirp').")
    if isinstance(gallery, SavedIndex):
        check_index_model(gallery, audio)
        return search_sounds(gallery, encode_labels(audio, [query[:300]])[0], k)
    if gallery.model_id != audio.model_id:
        raise MMDemoError("gallery_model_mismatch",
                          "The gallery was embedded with another audio model; search it again to rebuild it.")
    sim = gallery.embeddings @ encode_labels(audio, [query[:300]])[0]
    best = np.full(len(gallery), -np.inf)
    where = np.zeros(len(gallery), int)
    for w, (owner, s) in enumerate(zip(gallery.window_owner, sim)):
        if s > best[owner]:
            best[owner], where[owner] = s, w
    order = np.argsort(-best, kind="stable")[: max(1, int(k))]
    hits = []
    for i in order:
        item = gallery.items[i]
        start, end = gallery.window_seconds[where[i]]
        hits.append({"label": item["name"], "score": float(best[i]), "caption": item["caption"], "path": item["path"],
                     "duration": item["duration"], "start": round(start, 3), "end": round(end, 3)})
    return hits


# --------------------------------------------------------------------------- default gallery


def default_gallery_files(cache_dir: Path | None = None) -> Path:
    """The folder of example sounds: the bundled ones, else a few rendered on the spot."""
    return example_gallery("sounds", AUDIO_SUFFIXES, cache_dir)


def example_clip() -> tuple[int, np.ndarray]:
    """An 8 s clip of two sounds in a row, to try matching and the timeline without a file."""
    spec = sounds.SoundSpec((sounds.SoundEvent("chirp", "rising", 4.0, 0.0),
                             sounds.SoundEvent("noise", "white", 4.0, 0.0)), loud=True, seed=7)
    return sounds.SAMPLE_RATE, sounds.render_sound(spec)


def example_texts() -> list[str]:
    """A description of every sound class the tiny audio model knows: texts to search by a clip."""
    return sounds.sound_classes()
