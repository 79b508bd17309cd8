"""Prompt ensembles for zero-shot scoring: several templates per label, averaged.

The CLIP paper's method (Radford et al. 2021, section 3.1.4): each label is written
into every template ("a photo of a {}."), each prompt is embedded and L2-normalised,
the label's embedding is the mean of its prompts' embeddings, normalised again. The
scoring after that is unchanged, so one template gives exactly what it gave before.

Built-in sets are per modality. The tiny bundle reads a closed word-level vocabulary:
a CLIP-paper template such as "itap of a {}." would be read as "<unk> of a ...", so
its sets only use the wordings it was trained on (the leads of
``toyworld.scenes.paraphrases`` and ``toyworld.sounds.paraphrases``); the CLIP-paper
and generic sound sets are for real models. :func:`pick_builtin` chooses by what the
model's tokenizer knows.

Pure logic over an ``encode(texts) -> [N, D]`` callable: no torch, no gradio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError

MAX_TEMPLATES = 32  # an ensemble costs one text encode per template and label
MAX_TEMPLATE_CHARS = 120  # longer ones would be cut by a 77-token (or the tiny 24-word) context anyway
MODALITIES = ("image", "audio")
_EXAMPLE = {"image": "a photo of a {}", "audio": "the sound of {}"}


@dataclass(frozen=True)
class TemplateSet:
    name: str  # the key a client passes, e.g. "tiny-world"
    title: str  # what the page shows
    modality: str
    templates: tuple[str, ...]
    for_tiny: bool  # written in the tiny bundle's words

    @property
    def text(self) -> str:
        """One template a line: what the page's textbox holds."""
        return "\n".join(self.templates)


# Sizes are marginalised because every text the tiny CLIP trained on states one
# ("a little red star"), while a label ("red star") does not; the leads are the
# paraphrase leads of toyworld.scenes. Written from the training wordings, not tuned
# on any evaluation sample.
_TINY_IMAGE = tuple(f"{lead}a {size} {{}}" for lead in ("", "there is ", "a picture of ", "an image of ",
                                                        "a photo of ")
                    for size in ("small", "large"))
# Labels of sounds carry their own article ("a rising chirp"): only the paraphrase
# leads of toyworld.sounds go around them.
_TINY_AUDIO = ("{}", "the sound of {}", "you hear {}", "a recording of {}")
# The seven templates the CLIP authors selected for ImageNet (their prompt-engineering
# notebook, github.com/openai/CLIP, notebooks/Prompt_Engineering_for_ImageNet.ipynb).
_CLIP_PAPER = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
               "a {} in a video game.", "art of the {}.", "a photo of the small {}.")
# LAION-CLAP's training/evaluation template first (see tasks.classify.AUDIO_TEMPLATE),
# then plain wordings of "this is what you hear".
_GENERIC_AUDIO = ("This is a sound of {}.", "the sound of {}", "a recording of {}", "an audio clip of {}",
                  "{} can be heard")

BUILTIN_SETS: dict[str, dict[str, TemplateSet]] = {
    "image": {s.name: s for s in (
        TemplateSet("tiny-world", "Tiny world: words the tiny bundle knows (10)", "image", _TINY_IMAGE, True),
        TemplateSet("clip-paper", "CLIP paper: 7 ImageNet templates, for real CLIP models", "image", _CLIP_PAPER,
                    False),
    )},
    "audio": {s.name: s for s in (
        TemplateSet("tiny-world", "Tiny world: words the tiny bundle knows (4)", "audio", _TINY_AUDIO, True),
        TemplateSet("generic-audio", "Generic sound templates, for real audio models (5)", "audio", _GENERIC_AUDIO,
                    False),
    )},
}


def _modality(modality: str) -> dict[str, TemplateSet]:
    try:
        return BUILTIN_SETS[modality]
    except KeyError:
        raise MMDemoError("template_set_unknown", f"No built-in template sets for {modality!r}; "
                                                  f"there are sets for {', '.join(MODALITIES)}.") from None


def builtin_set(modality: str, name: str) -> TemplateSet:
    sets = _modality(modality)
    key = (name or "").strip()
    for s in sets.values():  # the page shows titles; clients may send either
        if key in (s.name, s.title):
            return s
    raise MMDemoError("template_set_unknown", f"Unknown built-in template set {name!r} for {modality}; choose one "
                                              f"of {', '.join(sets)}.")


def builtin_choices(modality: str) -> list[tuple[str, str]]:
    """(title, name) pairs for a dropdown."""
    return [(s.title, s.name) for s in _modality(modality).values()]


def pick_builtin(model, modality: str) -> TemplateSet:
    """The built-in set whose every word ``model`` can read, real-model sets first.

    A model without ``unknown_words`` (open_clip's BPE, CLAP's tokenizer) spells every
    word, so it gets the real-model set; the tiny bundle gets the tiny-world one."""
    find = getattr(model, "unknown_words", None)
    sets = sorted(_modality(modality).values(), key=lambda s: s.for_tiny)
    for s in sets:
        if find is None or not find([t.replace("{}", " ") for t in s.templates]):
            return s
    return sets[0]


def parse_templates(templates: str | Sequence[str] | None, *, modality: str = "image",
                    max_templates: int = MAX_TEMPLATES) -> list[str]:
    """Templates, one per line (or list element), stripped, blank lines and repeats
    dropped. ``[]`` for none given: the caller scores the labels as it did without.

    Raises MMDemoError for a template without ``{}`` or with more than one, one longer
    than MAX_TEMPLATE_CHARS, or more than ``max_templates`` of them."""
    if templates is None:
        return []
    pieces = [templates] if isinstance(templates, (str, bytes)) else list(templates)
    lines = []
    for piece in pieces:
        if isinstance(piece, bytes):
            piece = piece.decode("utf-8", errors="replace")
        lines += str(piece if piece is not None else "").splitlines()
    items = list(dict.fromkeys(ln.replace("\ufeff", "").replace("\x00", "").strip() for ln in lines))
    items = [t for t in items if t]
    if len(items) > max_templates:
        raise MMDemoError("templates_too_many", f"Too many prompt templates: {len(items)} (at most {max_templates}). "
                                                "Each one costs a text encoding per label; keep the ones that help.")
    for t in items:
        if len(t) > MAX_TEMPLATE_CHARS:
            raise MMDemoError("template_too_long", f"Prompt template {t[:40]!r}... is {len(t)} characters long "
                                                   f"(at most {MAX_TEMPLATE_CHARS}); the model would cut it.")
        if t.count("{}") != 1:
            raise MMDemoError("template_invalid", f"Template {t!r} must contain {{}} exactly once, where the label "
                                                  f"goes (e.g. '{_EXAMPLE.get(modality, _EXAMPLE['image'])}').")
    return items


def fill(template: str, label: str) -> str:
    # str.replace, not str.format: labels and templates may hold other braces.
    return template.replace("{}", label)


def prompts_for(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every label in every template, label-major: row l*T + t is label l in template t."""
    return [fill(t, label) for label in labels for t in templates]


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def average_templates(embeddings: np.ndarray, n_labels: int, n_templates: int) -> np.ndarray:
    """[L*T, D] prompt embeddings (label-major, as :func:`prompts_for`) -> [L, D]: each
    normalised, averaged per label, renormalised. Normalising first keeps a prompt the
    encoder happens to map to a longer vector from outweighing the others."""
    emb = normalise(embeddings)
    if emb.ndim != 2 or emb.shape[0] != n_labels * n_templates:
        raise ValueError(f"expected {n_labels * n_templates} embeddings, got shape {emb.shape}")
    return normalise(emb.reshape(n_labels, n_templates, -1).mean(axis=1))


def ensemble_embeddings(encode: Callable[[list[str]], np.ndarray], labels: Sequence[str],
                        templates: Sequence[str]) -> np.ndarray:
    """[L, D] label embeddings from ``encode`` (texts -> [N, D]); no templates = the labels as typed."""
    templates = list(templates) or ["{}"]
    return average_templates(encode(prompts_for(labels, templates)), len(labels), len(templates))


def describe(templates: Sequence[str]) -> str:
    """For a result's summary line."""
    if not templates or list(templates) == ["{}"]:
        return "labels as typed"
    if len(templates) == 1:
        return f"“{templates[0]}”"
    if len(templates) <= 3:  # a few: each named, as before ensembles had built-in sets
        return ", ".join(f"“{t}”" for t in templates) + " (averaged)"
    return f"{len(templates)} templates averaged (“{templates[0]}”, …)"
