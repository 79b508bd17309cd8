"""Words for an image: generate captions with a captioner (CoCa), or rank candidate
captions with a CLIP model (zero-shot: a softmax over the candidates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mmdemo.errors import Notice
from mmdemo.models.decode_options import DecodeOptions
from mmdemo.tasks.domain_notices import image_notice
from mmdemo.tasks.image.inputs import load, parse_texts, text_notices
from mmdemo.toyworld import scenes


@dataclass
class CaptionResult:
    captions: list[str]
    notices: list[str] = field(default_factory=list)


@dataclass
class RankResult:
    ranked: list[dict]  # [{label, score (softmax probability), similarity (cosine)}] best first
    notices: list[str] = field(default_factory=list)


def caption_image(source: Any, captioner, *, method: str = "beam", num_beams: int = 3, max_length: int = 20,
                  temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9, num_captions: int = 1,
                  seed: int | None = 0, name: str | None = None) -> CaptionResult:
    """Generated caption(s) for one image; decoding options are checked before any work."""

    def as_int(v):
        return int(v) if isinstance(v, float) and v.is_integer() else v  # sliders send 3.0

    options = DecodeOptions(method=str(method or "beam").strip().lower(), num_beams=as_int(num_beams),
                            max_length=as_int(max_length), temperature=temperature, top_k=as_int(top_k),
                            top_p=top_p, num_return=as_int(num_captions),
                            seed=None if seed is None or seed == "" else as_int(seed))
    # Name the controls the user sees, not DecodeOptions' fields.
    options.validate({"num_return": "the number of captions", "num_beams": "the number of beams",
                      "max_length": "the max length"})
    loaded = load(source, name)
    captions = captioner.generate([loaded.image], options)[0]
    notices = list(loaded.notices)
    said = [c.strip() for c in captions if c.strip()]
    if not said:
        notices.append(Notice("caption_empty",
                              "The model produced an empty caption; try beam search or a larger max length."))
    reached = getattr(captioner, "reached_limit", None)
    if said and reached is not None and any(reached(said, options)):
        notices.append(Notice("caption_cut",
                              f"The caption reached the max length ({options.max_length}) and may be cut short; "
                              "raise the max length to let the model finish it."))
    unique = list(dict.fromkeys(said))
    if len(unique) < len(said):
        notices.append(Notice("captions_merged",
                              f"Merged {len(said) - len(unique)} duplicate caption(s) of the {len(said)} generated; "
                              "sampling (top-k/top-p) with a higher temperature gives more variety."))
    notices += image_notice(captioner, [loaded.image])
    return CaptionResult(unique or [""], notices)


_GENERIC_SUBJECTS = (
    "a dog", "a cat", "a bird", "a horse", "a cow", "a sheep", "an elephant", "a bear", "a zebra", "a giraffe",
    "a fish", "a person", "a man", "a woman", "a child", "a group of people", "a baby", "a car", "a bus", "a truck",
    "a bicycle", "a motorcycle", "a train", "an airplane", "a boat", "a street", "a city skyline", "a building",
    "a house", "a bridge", "a mountain", "a beach", "a forest", "a lake", "a river", "a desert", "a field of flowers",
    "a sunset", "the night sky", "snow", "a garden", "a tree", "a flower", "a kitchen", "a living room", "a bedroom",
    "an office", "a classroom", "a restaurant", "a plate of food", "a pizza", "a cake", "fruit", "vegetables",
    "a cup of coffee", "a bottle", "a laptop", "a phone", "a book", "a chair", "a table", "a clock", "a toy",
    "a ball", "a painting", "a drawing", "a cartoon", "a diagram", "a chart", "a screenshot", "text", "a logo",
    "a map", "a face", "a crowd", "a sports game", "a musical instrument", "a shoe", "a bag", "a hat",
)


def caption_bank(clip=None) -> list[str]:
    """Built-in candidate captions for ranking when the user gives none.

    The tiny bundle knows only the generated world, so its bank is that world's
    one-object captions (every size, colour and shape, on every background); any
    other model gets a list of everyday English captions.
    """
    words = set(getattr(getattr(clip, "tokenizer", None), "words", None) or ())
    if clip is None or set(scenes.SHAPES) | set(scenes.COLOURS) <= words:
        return [f"a {size} {colour} {shape} on a {bg} background"
                for colour in scenes.COLOURS for shape in scenes.SHAPES for size in scenes.SIZES
                for bg in scenes.BACKGROUNDS]
    return [f"a photo of {s}" for s in _GENERIC_SUBJECTS]


def rank_captions(source: Any, candidates: str | Sequence[str] | None, clip, *, name: str | None = None) -> RankResult:
    """Candidate captions (one per line; blank = the built-in bank) ranked for an image.

    ``score`` is CLIP's zero-shot probability (softmax over the candidates at the
    model's logit scale), ``similarity`` the cosine similarity behind it.
    """
    blank = candidates is None or (isinstance(candidates, str) and not candidates.strip()) or (
        not isinstance(candidates, str) and not any(str(c).strip() for c in candidates if c is not None))
    if blank:
        items, notices = caption_bank(clip), []
    else:
        items, notices = parse_texts(candidates, "captions")
    loaded = load(source, name)
    notices = loaded.notices + notices + text_notices(clip, items, "captions")
    img = np.asarray(clip.encode_images([loaded.image]), np.float32)
    notices += image_notice(clip, [loaded.image])
    txt = np.asarray(clip.encode_texts(items), np.float32)
    sim = (img @ txt.T)[0]
    probs = np.asarray(clip.zero_shot(img, txt), np.float64)[0]
    order = np.argsort(-probs, kind="stable")
    return RankResult([{"label": items[i], "score": float(probs[i]), "similarity": float(sim[i])} for i in order],
                      notices)
