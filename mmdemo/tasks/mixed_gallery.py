"""One cross-modal gallery: images and sounds together, searched by a text, an image or a
sound, results of both kinds ranked in one list.

Two ways the kinds meet, decided by the models (``AudioHandle.space``):

- **one space** (the tiny bundle): the audio encoder was trained into the CLIP's text
  space, so image, text and sound embeddings are compared directly and every result is
  ranked by its cosine to the query. Measured on the bundle's example galleries: a
  caption's own image scores 0.75 on average and a description's own sound 0.89, while
  no item of the other kind scores above 0.54, so raw cosines rank both kinds fairly.
- **bridged through text** (a CLIP beside a CLAP): the spaces differ, so a text query is
  embedded by each model's own text tower, and an image reaches sounds (or a sound
  images) through a list of bridge texts: the query is described by its softmax over the
  bridge texts in its own space, and each item of the other kind is scored by its
  expected cosine to those texts in its space. Scores of different spaces are not on
  one scale, so each kind's scores are standardised (z-scores over the gallery's items
  of that kind) before both are ranked together; the page says so.

A sound is as close as its best window (as in the Audio tab's search). Nothing here
imports gradio or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.media import load_audio, parse_text_lines
from mmdemo.scores import softmax
from mmdemo.tasks.audio import MAX_CLIP_SECONDS, AudioGallery, embed_clip, encode_labels, example_texts
from mmdemo.tasks.image.captioning import caption_bank
from mmdemo.tasks.image.gallery import ImageGallery
from mmdemo.scores import result_count
from mmdemo.tasks.image.inputs import load, read_query

QUERY_KINDS = ("text", "image", "sound")
MAX_RESULTS = 48
MAX_BRIDGE_TEXTS = 400
_MIN_STD = 1e-6


@dataclass
class MixedGallery:
    images: ImageGallery | None
    sounds: AudioGallery | None
    shared: bool  # sounds live in the CLIP's text space: one space, raw cosines
    bridge_texts: list[str] = field(default_factory=list)  # bridged only: what joins the two spaces
    notices: list[str] = field(default_factory=list)
    # The bridge texts embedded by both models, on first use (a race computes them twice, harmlessly).
    bridge_embeddings: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return (len(self.images) if self.images else 0) + (len(self.sounds) if self.sounds else 0)


@dataclass
class MixedSearch:
    query_kind: str
    hits: list[dict]  # best first: {kind, label, path, caption, score (ranking key), cosine, start, end}
    method: str  # "cosine" (one space) or "standardised per kind" (bridged)
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query_kind": self.query_kind, "method": self.method, "hits": self.hits,
                "notices": list(self.notices)}


def shares_space(clip, audio) -> bool:
    return getattr(audio, "space", None) == clip.model_id


def default_bridge_texts(images: ImageGallery | None, sounds: AudioGallery | None, clip) -> list[str]:
    """The gallery's own captions, every sound class the generated world knows and the
    everyday subjects of the caption bank: what an image or a sound can be described by."""
    own = [it.get("caption", "") for it in (images.index.items if images else [])]
    own += [it.get("caption", "") for it in (sounds.items if sounds else [])]
    texts = [t for t in dict.fromkeys(t.strip() for t in own + example_texts() + caption_bank(clip)) if t]
    return texts[:MAX_BRIDGE_TEXTS]


def mixed_gallery(images: ImageGallery | None, sounds: AudioGallery | None, clip, audio, *,
                  bridge_texts: Sequence[str] | str | None = None) -> MixedGallery:
    """Images (indexed by ``clip``) and sounds (by ``audio``) as one gallery."""
    if not images and not sounds:
        raise MMDemoError("gallery_empty", "The gallery needs some images or sounds.")
    if images is not None and images.model_id != clip.model_id:
        raise MMDemoError("gallery_model_mismatch", "The images were indexed with another CLIP; index them again.")
    if sounds is not None and sounds.model_id != audio.model_id:
        raise MMDemoError("gallery_model_mismatch", "The sounds were indexed with another audio model; index them "
                                                    "again.")
    notices = list(images.notices if images else []) + list(sounds.notices if sounds else [])
    shared = shares_space(clip, audio)
    texts: list[str] = []
    if not shared:
        if bridge_texts is None or (isinstance(bridge_texts, str) and not bridge_texts.strip()):
            texts = default_bridge_texts(images, sounds, clip)
        else:
            texts, more = parse_text_lines(bridge_texts, what="bridge texts", max_items=MAX_BRIDGE_TEXTS)
            notices += more
    return MixedGallery(images, sounds, shared, texts, notices)


def _best_windows(sounds: AudioGallery, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sound's best window score (and which window) from window similarities [W]."""
    best = np.full(len(sounds), -np.inf)
    where = np.zeros(len(sounds), int)
    for w, (owner, s) in enumerate(zip(sounds.window_owner, sim)):
        if s > best[owner]:
            best[owner], where[owner] = s, w
    return best, where


def _query(kind: str, text, image, sound, clip, audio, name: str | None):
    """The query embedded in the space(s) it needs: {"clip": vec, "audio": vec} (either may be
    absent) and notices."""
    if kind == "text":
        query, notices = read_query(text, clip)
        return {"clip": np.asarray(clip.encode_texts([query]), np.float32)[0], "text": query}, notices
    if kind == "image":
        loaded = load(image, name)
        return {"clip": np.asarray(clip.encode_images([loaded.image]), np.float32)[0]}, list(loaded.notices)
    if sound is None or (isinstance(sound, str) and not sound.strip()):
        raise MMDemoError("audio_missing", "Upload or record a sound to search with.")
    clip_audio = load_audio(sound, name=name, target_sr=lambda: audio.sample_rate, max_seconds=MAX_CLIP_SECONDS)
    windows = embed_clip(audio, clip_audio).embeddings
    mean = windows.mean(0)
    return {"audio": mean / max(float(np.linalg.norm(mean)), _MIN_STD)}, list(clip_audio.notices)


def _bridge(query_vec: np.ndarray, query_texts: np.ndarray, scale: float, item_texts: np.ndarray) -> np.ndarray:
    """Expected cosine of each item to the bridge texts, weighted by how the query reads them:
    softmax(scale * q . t) in the query's space, item . t in the items' space."""
    weights = softmax(scale * (query_texts @ query_vec))
    return item_texts @ weights


def search_mixed(gallery: MixedGallery, clip, audio, *, by: str = "text", text: str | None = None, image: Any = None,
                 sound: Any = None, k: int = 12, name: str | None = None) -> MixedSearch:
    """The ``k`` best images and sounds for one query (``by`` says which input is the query)."""
    kind = str(by or "text").strip().lower()
    if kind not in QUERY_KINDS:
        raise MMDemoError("query_kind_unknown", f"Search by one of {', '.join(QUERY_KINDS)} (got {by!r}).")
    k = min(result_count(k), MAX_RESULTS)
    q, notices = _query(kind, text, image, sound, clip, audio, name)
    scores: dict[str, np.ndarray] = {}
    windows = None
    if gallery.images:
        emb = np.asarray(gallery.images.index.embeddings, np.float32)
        if "clip" in q:
            scores["image"] = emb @ q["clip"]
        elif gallery.shared:  # a sound query, in the CLIP's text space
            scores["image"] = emb @ q["audio"]
        else:
            t_clip, t_audio = _bridge_embeddings(gallery, clip, audio)
            scores["image"] = _bridge(q["audio"], t_audio, float(audio.logit_scale), emb @ t_clip.T)
    if gallery.sounds:
        emb = gallery.sounds.embeddings
        if kind == "sound" or gallery.shared:
            sim = emb @ (q.get("audio") if kind == "sound" else q["clip"])
        elif kind == "text":  # the audio model's own text tower
            sim = emb @ np.asarray(encode_labels(audio, [q["text"]]), np.float32)[0]
        else:  # an image query, bridged
            t_clip, t_audio = _bridge_embeddings(gallery, clip, audio)
            sim = _bridge(q["clip"], t_clip, float(clip.logit_scale), emb @ t_audio.T)
        scores["sound"], windows = _best_windows(gallery.sounds, sim)
    method = "cosine" if gallery.shared else "standardised per kind"
    keys = scores if gallery.shared else {m: _standardise(s) for m, s in scores.items()}
    flat = [(float(keys[m][i]), m, i) for m in scores for i in range(len(scores[m]))]
    flat.sort(key=lambda t: -t[0])
    hits = [_hit(gallery, m, i, key, float(scores[m][i]), windows) for key, m, i in flat[:k]]
    if not gallery.shared:
        notices.append(Notice("bridged_spaces", "Images and sounds are embedded by different models here; "
                                                "scores are standardised per kind to rank them together."))
    return MixedSearch(kind, hits, method, notices)


def _standardise(s: np.ndarray) -> np.ndarray:
    return (s - s.mean()) / max(float(s.std()), _MIN_STD) if len(s) > 1 else s - s.mean()


def _bridge_embeddings(gallery: MixedGallery, clip, audio) -> tuple[np.ndarray, np.ndarray]:
    if gallery.bridge_embeddings is None:
        texts = gallery.bridge_texts
        gallery.bridge_embeddings = (np.asarray(clip.encode_texts(texts), np.float32),
                                     np.asarray(encode_labels(audio, texts), np.float32))
    return gallery.bridge_embeddings


def _hit(gallery: MixedGallery, kind: str, i: int, key: float, cosine: float, windows) -> dict:
    if kind == "image":
        item = gallery.images.index.items[i]
        return {"kind": "image", "label": item.get("name", str(i)), "path": item.get("path"),
                "caption": item.get("caption", ""), "score": round(key, 4), "cosine": round(cosine, 4),
                "start": None, "end": None}
    item = gallery.sounds.items[i]
    start, end = gallery.sounds.window_seconds[windows[i]]
    return {"kind": "sound", "label": item["name"], "path": item["path"], "caption": item.get("caption", ""),
            "score": round(key, 4), "cosine": round(cosine, 4), "start": round(start, 3), "end": round(end, 3)}


__all__ = ["QUERY_KINDS", "MAX_RESULTS", "MixedGallery", "MixedSearch", "mixed_gallery", "search_mixed",
           "shares_space", "default_bridge_texts"]
