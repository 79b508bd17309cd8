"""Side by side: one input through several models of the registry, or through every
fusion head at once, as one table of answers and scores.

Each model or head is one row; a model that fails to load, is the wrong kind for the
mode, or a head that cannot take the given inputs is a row that says why, never the
end of the comparison. Rows are plain dicts (``to_dict`` of the results is what the API
returns). The per-model work is the Image tab's own (``rank_captions``,
``caption_image``) and the Classify tab's (``classify``), so the numbers are the ones
those tabs show. Nothing here imports gradio or torch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from mmdemo.errors import MMDemoError, Notice
from mmdemo.head_kinds import at_chance, quality_line
from mmdemo.tasks.classify.apply import classify, read_inputs
from mmdemo.tasks.classify.datasets import rate_of
from mmdemo.tasks.classify.heads import resolve_head
from mmdemo.tasks.image.captioning import caption_image, rank_captions
from mmdemo.tasks.image.inputs import load, parse_texts

log = logging.getLogger(__name__)

MODES = ("rank", "caption")
# Each model is loaded (a real one: downloaded, then hundreds of MB in memory) and run in
# turn within one request: a handful is a comparison, more is a queue-blocking batch job.
MAX_MODELS = 4
MIN_MODELS = 2
# One column per candidate in the table: past a screen's width it stops being readable.
MAX_COMPARE_TEXTS = 20
# "Every head" of a user with many saved heads: the first this many (bundled heads first).
MAX_HEADS = 40
CLIP_KINDS = ("clip", "captioner")  # a captioner (CoCa) is a CLIP too: it ranks texts


@dataclass
class ModelComparison:
    mode: str  # "rank" | "caption"
    texts: list[str]  # the candidates, in the order given (rank mode; [] for captions)
    # One per model picked, in that order: {model, kind, ok, answer, score, scores {text: probability},
    # similarities {text: cosine}, captions, load_seconds, seconds, error, notices}
    rows: list[dict]
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "texts": self.texts, "rows": self.rows, "notices": list(self.notices),
                "summary": self.summary()}

    def summary(self) -> str:
        """Whether the models that answered agree, in one sentence."""
        ok = [r for r in self.rows if r["ok"]]
        failed = len(self.rows) - len(ok)
        tail = f" {failed} of {len(self.rows)} could not answer (see their rows)." if failed else ""
        if not ok:
            return f"None of the {len(self.rows)} models could answer (see their rows)."
        answers = list(dict.fromkeys(r["answer"] for r in ok))
        if len(ok) == 1:
            return f"Only {ok[0]['model']} answered: “{ok[0]['answer']}”.{tail}"
        if len(answers) == 1:
            return f"All {len(ok)} models that answered agree: “{answers[0]}”.{tail}"
        return f"The models disagree: {len(answers)} different answers from {len(ok)} models.{tail}"


@dataclass
class HeadComparison:
    modalities: list[str]  # the inputs given
    # One per head: {head, kind, task, modalities, ok, prediction, probability, labels [{label, score}],
    # contributions {modality: drop in the top label's probability without it}, explanation, error, notices}
    rows: list[dict]
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"modalities": self.modalities, "rows": self.rows, "notices": list(self.notices)}


def _row_notices(notices, shared: Sequence[str]) -> list[str]:
    """A model's own notices, without those every row would repeat (they are said once)."""
    seen = set(shared)
    return [str(n) for n in dict.fromkeys(notices) if n not in seen]


def _failed(row: dict, exc: Exception, what: str) -> dict:
    if isinstance(exc, MMDemoError):
        row["error"] = str(exc)
    else:  # a bug, or a backend's own error while running: logged, and this row says so
        log.exception("comparing %s failed", what)
        row["error"] = f"{what} failed: {type(exc).__name__}: {exc}"
    row["ok"] = False
    return row


def _names(names: Sequence[str] | str | None) -> list[str]:
    """Picked names, stripped, once each, in order (an API client may send "a, b" or lines)."""
    if isinstance(names, str):
        names = names.replace(",", "\n").splitlines()
    return list(dict.fromkeys(str(n).strip() for n in (names or ()) if n is not None and str(n).strip()))


def _picked_models(names: Sequence[str] | str | None) -> list[str]:
    picked = _names(names)
    if len(picked) < MIN_MODELS:
        raise MMDemoError("compare_too_few_models", f"Pick at least {MIN_MODELS} different models to compare "
                                                    f"(got {len(picked)}).")
    if len(picked) > MAX_MODELS:
        raise MMDemoError("compare_too_many_models", f"Pick at most {MAX_MODELS} models to compare at once "
                                                     f"(got {len(picked)}): each one is loaded and run in turn.")
    return picked


def _wrong_kind(name: str, kind: str, mode: str) -> str | None:
    if mode == "caption" and kind == "clip":
        return f"{name!r} is a CLIP model: it ranks texts but writes no captions; compare it in rank mode."
    if mode == "caption" and kind != "captioner":
        return f"{name!r} is not a captioner (its kind is {kind}); captions need a captioner (CoCa)."
    if mode == "rank" and kind not in CLIP_KINDS:
        return f"{name!r} is not a CLIP model (its kind is {kind}); ranking texts for an image needs a CLIP or a CoCa."
    return None


def compare_models(registry, names: Sequence[str] | str | None, image: Any, texts: str | Sequence[str] | None = None,
                   *, mode: str = "rank", name: str | None = None,
                   progress: Callable[[int, int, str], None] | None = None, **caption_options) -> ModelComparison:
    """One image through each of ``names`` (registry entries): in ``rank`` mode each CLIP-capable
    model ranks the candidate ``texts`` (a softmax over them: a row's scores sum to 1); in
    ``caption`` mode each captioner writes a caption (``caption_options``: those of
    ``caption_image``). Inputs are checked before any model loads; ``progress(done, total, model)``
    is told before each model (its first use may load, or download, it)."""
    mode = str(mode or "rank").strip().lower()
    if mode not in MODES:
        raise MMDemoError("compare_mode_unknown", f"Unknown comparison mode {mode!r}; use one of {', '.join(MODES)}.")
    picked = _picked_models(names)
    items: list[str] = []
    notices: list[str] = []
    if mode == "rank":
        blank = texts is None or (isinstance(texts, str) and not texts.strip())
        if blank:
            raise MMDemoError("compare_texts_missing", "Type the candidate texts to rank (one per line): every "
                                                       "model scores the same candidates.")
        items, notices = parse_texts(texts, "candidate texts")
        if len(items) > MAX_COMPARE_TEXTS:
            raise MMDemoError("compare_too_many_texts", f"Too many candidate texts: {len(items)}, at most "
                                                        f"{MAX_COMPARE_TEXTS} fit side by side. Remove some.")
    loaded = load(image, name)  # a missing or unreadable image: refused before any model loads
    notices = list(loaded.notices) + list(notices)
    rows = []
    for i, model in enumerate(picked):
        if progress is not None:
            progress(i, len(picked), model)
        rows.append(_one_model(registry, model, loaded.image, items, mode, caption_options, notices))
    return ModelComparison(mode, items, rows, [str(n) for n in dict.fromkeys(notices)])


def _one_model(registry, model: str, image, items: list[str], mode: str, caption_options: dict,
               shared: Sequence[str]) -> dict:
    row = {"model": model, "kind": None, "ok": True, "answer": None, "score": None, "scores": {},
           "similarities": {}, "captions": [], "load_seconds": None, "seconds": None, "error": None, "notices": []}
    try:
        if model not in registry.catalog.entries:  # the registry's message lists every entry, heads too
            fit = [n for n in registry.names() if not _wrong_kind(n, registry.catalog.entry(n).kind, mode)]
            raise MMDemoError("model_unknown", f"No model named {model!r}; models that can {mode}: "
                                               f"{', '.join(fit) or 'none'}.")
        row["kind"] = kind = registry.catalog.entry(model).kind
        wrong = _wrong_kind(model, kind, mode)
        if wrong:
            raise MMDemoError("compare_wrong_kind", wrong)
        was_loaded, started = registry.is_loaded(model), time.perf_counter()
        handle = registry.get(model)
        ran = time.perf_counter()
        row["load_seconds"] = None if was_loaded else round(ran - started, 3)
        if mode == "rank":
            res = rank_captions(image, items, handle)
            by_label = {r["label"]: r for r in res.ranked}
            row["scores"] = {t: by_label[t]["score"] for t in items}
            row["similarities"] = {t: by_label[t]["similarity"] for t in items}
            row["answer"], row["score"] = res.ranked[0]["label"], res.ranked[0]["score"]
        else:
            res = caption_image(image, handle, **caption_options)
            row["captions"], row["answer"] = res.captions, res.captions[0]
        row["seconds"] = round(time.perf_counter() - ran, 3)
        row["notices"] = _row_notices(res.notices, shared)
    except Exception as exc:  # one model's failure is its row, not the end of the comparison
        return _failed(row, exc, f"Model {model!r}")
    return row


class RegistryHeads:
    """The registry's fusion heads, as :class:`mmdemo.tasks.classify.heads.OwnerHeads` lists
    and resolves a user's (for the CLI and tests, where there is no session)."""

    def __init__(self, registry):
        self.registry = registry

    def names(self) -> list[str]:
        return self.registry.names(kind="fusion")

    def resolve(self, name: str):
        return resolve_head(self.registry, name)


def _picked_heads(heads, names: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
    picked = _names(names)
    if picked:
        if len(picked) > MAX_HEADS:
            raise MMDemoError("compare_too_many_heads", f"Pick at most {MAX_HEADS} heads (got {len(picked)}), or "
                                                        "none for every head.")
        return picked, []
    every = list(heads.names())
    if not every:
        raise MMDemoError("compare_no_heads", "There is no fusion head to compare: train one in the Classify tab, "
                                              "or use the tiny profile's heads.")
    if len(every) > MAX_HEADS:
        return every[:MAX_HEADS], [Notice("compare_heads_cut", f"Compared the first {MAX_HEADS} of your "
                                                                f"{len(every)} heads; pick heads to compare others.")]
    return every, []


def compare_heads(heads, image, text, audio_input, clip, audio=None, *,
                  names: Sequence[str] | str | None = None, token_tower=None) -> HeadComparison:
    """One example (image, text and/or audio) through each head of ``heads`` (anything with
    ``names()`` and ``resolve(name)``: a user's :class:`OwnerHeads`, or :class:`RegistryHeads`);
    ``names`` picks some, none means every head. Each modality is encoded once for all heads.

    A head's row holds its prediction and probability, each modality's contribution (how
    much the predicted label's probability drops with that input removed: the Classify
    tab's ablation) and the head's own explanation (weights, gates or attention). A head
    that needs an input not given, or fails to load, is a row with the reason."""
    picked, notices = _picked_heads(heads, names)
    inputs = read_inputs(image, text, audio_input, audio_rate=rate_of(audio))
    given = [m for m, v in (("image", inputs.image), ("text", inputs.text), ("audio", inputs.wave))
             if v is not None]
    if not given:
        raise MMDemoError("input_missing", "Give the heads an input: an image and a text (and a sound for heads "
                                           "that use audio).")
    notices = [str(n) for n in dict.fromkeys(list(inputs.notices) + notices)]
    features: dict = {}  # each modality encoded once, by the first head that uses it
    rows = [_one_head(heads, n, inputs, given, (clip, audio, token_tower), features, notices) for n in picked]
    if not any(r["ok"] for r in rows):
        notices.append(Notice("compare_no_head_fits", f"No head could take these inputs ({', '.join(given)}); "
                                                      "each row says why."))
    return HeadComparison(given, rows, notices)


def _one_head(heads, head: str, inputs, given: list[str], encoders: tuple, features: dict,
              shared: Sequence[str]) -> dict:
    clip, audio, token_tower = encoders
    row = {"head": head, "kind": None, "task": None, "quality": None, "modalities": [], "ok": True, "prediction": None,
           "probability": None, "labels": [], "contributions": {}, "explanation": None, "error": None,
           "notices": []}
    try:
        handle = heads.resolve(head)
        row["kind"], row["modalities"] = handle.kind, list(handle.modalities)
        meta = getattr(handle, "meta", None) or {}
        row["task"] = meta.get("task")
        # How good the head is on its own task, and a word when it is at chance.
        row["quality"] = quality_line(meta) + (" (at chance)" if at_chance(meta) else "")
        missing = [m for m in handle.modalities if m not in given]
        if missing:
            raise MMDemoError("compare_head_needs_input", f"Not run: this head needs {' + '.join(handle.modalities)};"
                                                          f" add the {' and '.join(missing)}.")
        if "audio" in handle.modalities and audio is None:
            raise MMDemoError("audio_model_missing", "Not run: this head uses audio, but the active profile has no "
                                                     "audio model.")
        res = classify(handle, None, None, None, clip, audio, inputs=inputs, features=features,
                       token_tower=token_tower)
        top = res.labels[0]
        row.update(prediction=top["label"], probability=top["score"], labels=res.labels,
                   contributions={a["modality"]: a["top_drop"] for a in res.ablation},
                   explanation=res.explanation, notices=_row_notices(
                       # The row's inputs say which heads left the clip out: no notice per head.
                       [n for n in res.notices if getattr(n, "code", None) != "audio_ignored"], shared))
    except Exception as exc:  # one head's failure is its row, not the end of the comparison
        return _failed(row, exc, f"Head {head!r}")
    return row


__all__ = ["MODES", "MAX_MODELS", "MIN_MODELS", "MAX_COMPARE_TEXTS", "MAX_HEADS", "CLIP_KINDS", "ModelComparison",
           "HeadComparison", "RegistryHeads", "compare_models", "compare_heads"]
