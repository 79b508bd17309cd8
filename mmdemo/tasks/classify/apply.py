"""Applying heads: one example's labels from a fusion head (with each modality's
ablation and the head's own explanation), or zero-shot against typed labels.

Results hold plain lists of ``{label, score}``, best first, as Hugging Face
pipelines return them. The encoders and heads are typed handles (numpy in, numpy
out, on their own device), so nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.head_inputs import encode_for_heads, reads_tokens, tokens_read_by, tower_for
from mmdemo.head_kinds import POOLED_LIMIT, TOKEN_KINDS, WHAT_IT_READS, chance_warning, quality_line
from mmdemo.media import load_audio, load_image, parse_text_lines
from mmdemo.scores import ranked, softmax
from mmdemo.tasks.prompts import ensemble_embeddings, fill, parse_templates, prompts_for
from mmdemo.tasks.domain_notices import clip_notice, image_notice, image_tokens_notice
from mmdemo.tasks.text_notices import unknown_words_notice
from mmdemo.tasks.classify.datasets import (MAX_AUDIO_SECONDS, MAX_CLASSES, MAX_IMAGE_PIXELS, MAX_LABEL_CHARS,
                                            MAX_TEXT_CHARS, rate_of)

DEFAULT_TEMPLATE = "a {}"
AUDIO_TEMPLATE = "This is a sound of {}."  # for audio models in their own space: see audio_prompts
MODALITIES = ("image", "text", "audio")


@dataclass
class Inputs:
    image: object | None  # PIL
    text: str | None
    wave: np.ndarray | None
    notices: list[str]


def _given(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value)


def read_inputs(image, text, audio, *, audio_rate: int | Callable[[], int] = 16000) -> Inputs:
    notices: list[str] = []
    img = None
    if _given(image):
        loaded = load_image(image, max_pixels=MAX_IMAGE_PIXELS)
        img, notices = loaded.image, notices + list(loaded.notices)
    txt = None
    if text is not None:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                text = bytes(text).decode("utf-8", errors="replace")
                notices.append(Notice("text_not_utf8", "The text was not valid UTF-8; unreadable characters were "
                                                       "replaced with \ufffd."))
        txt = " ".join(str(text).replace("\x00", "").split())
        if len(txt) > MAX_TEXT_CHARS:
            notices.append(Notice("text_shortened",
                                  f"The text was longer than {MAX_TEXT_CHARS} characters and was shortened."))
        txt = txt[:MAX_TEXT_CHARS] or None
    wave = None
    if _given(audio):
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


def _single_features(inputs: Inputs, modalities, clip, audio, cache: dict | None = None,
                     token_tower=None) -> tuple[dict, dict, dict]:
    """(pooled, tokens, the CLIP's own image tokens or {}) of one example for a head.
    ``cache`` (the caller's, for one example and one set of encoders) lets several heads
    share one encoding of each modality (mmdemo.tasks.compare runs every head at once);
    image entries are kept per token tower, since heads of one comparison may read different ones."""
    cache = {} if cache is None else cache
    tower_id = token_tower.model_id if token_tower is not None else ""
    key = {m: (m, tower_id) if m == "image" else m for m in MODALITIES}
    plain = cache.get(("image", ""))
    if "image" in modalities and key["image"] not in cache and plain is not None:
        # The CLIP's pass is done (for a pooled head): only the tower's patches are missing.
        cache[key["image"]] = (plain[0], token_tower.encode_image_tokens([inputs.image])[1], plain[2])
    todo = [m for m in MODALITIES if m in modalities and key[m] not in cache]
    if todo:
        enc = encode_for_heads(todo, clip, audio, token_tower, images=[inputs.image], texts=[inputs.text],
                               waves=[inputs.wave])
        for m in todo:
            own = enc.clip_image_tokens if m == "image" and enc.clip_image_tokens is not None else enc.tokens[m]
            cache[key[m]] = (enc.pooled[m], enc.tokens[m], own)
        if "image" in todo and tower_id:  # the same CLIP pass serves a pooled head later
            cache.setdefault(("image", ""), (enc.pooled["image"], enc.clip_image_tokens, enc.clip_image_tokens))
    feats = {m: cache[key[m]][0] for m in MODALITIES if m in modalities}  # in the order heads were always given them
    tokens = {m: cache[key[m]][1] for m in MODALITIES if m in modalities}
    own = {"image": cache[key["image"]][2]} if "image" in modalities else {}
    return feats, tokens, own


def _domain_notices(feats: dict, own_tokens: dict, wave, clip, audio) -> list[Notice]:
    """Inputs unlike the encoders' world, said beside the head's answer (the image from
    the CLIP's own tokens already extracted for it, the clip from its frames)."""
    return ((image_tokens_notice(clip, own_tokens["image"]) if "image" in own_tokens else [])
            + (clip_notice(audio, wave) if "audio" in feats else []))


def _explanation(raw: dict, modalities: Sequence[str]) -> dict:
    """The head's own account (``FusionHandle.explain``) as names and values to plot."""
    if "modality_weights" in raw:
        return {"type": "modality_weights", "names": list(modalities),
                "values": [float(v) for v in np.asarray(raw["modality_weights"]).ravel()]}
    if "gates" in raw:
        out = {"type": "gates", "names": [str(m) for m in raw["modalities"]],
               "values": [float(v) for v in np.asarray(raw["gates"])[0]]}
        if "image_token_gates" in raw:  # how open each patch's gate was
            _add_grid(out, [float(v) for v in np.asarray(raw["image_token_gates"])[0]])
        return out
    if "attention" in raw:
        w = np.asarray(raw["attention"])[0]
        names = [str(m) for m in raw["key_modalities"]]
        per_mod = {m: float(w[[i for i, n in enumerate(names) if n == m]].sum()) for m in dict.fromkeys(names)}
        out = {"type": "attention", "names": list(per_mod), "values": list(per_mod.values())}
        _add_grid(out, [float(w[i]) for i, n in enumerate(names) if n == "image"])
        return out
    return {"type": "none", "names": [], "values": []}


def _add_grid(out: dict, per_patch: list[float]) -> None:
    """``per_patch`` as a square ``image_grid`` to draw over the image. Patch tokens come
    row by row; some encoders put a class token first."""
    for skip in (0, 1):
        side = int(round(np.sqrt(max(len(per_patch) - skip, 0))))
        if side > 1 and side * side == len(per_patch) - skip:
            out["image_grid"] = np.asarray(per_patch[skip:]).reshape(side, side).tolist()
            return


def describe_head(handle) -> str:
    """What a person should know before trusting a head (Markdown): what its kind reads,
    its task, and its held-out accuracy against chance and the best single modality; a head
    at chance says so, and why."""
    meta = getattr(handle, "meta", None) or {}
    reads = WHAT_IT_READS.get(handle.kind, handle.kind)
    if handle.kind in TOKEN_KINDS and not reads_tokens(meta.get("config")):
        reads = f"{handle.kind} over pooled vectors (an older head design)"
    task = f" for *{meta['task']}*" if meta.get("task") else ""
    quality = quality_line(meta)
    article = "an" if handle.kind[0] in "aeiou" else "a"
    text = (f"**{handle.name}**: {article} {handle.kind} head over {' + '.join(handle.modalities)}{task}; it reads "
            f"{reads}. {quality[0].upper()}{quality[1:]}.")
    warning = chance_warning(meta, handle.kind)
    if warning:
        return text + f"\n\n⚠️ {warning}"
    if handle.kind not in TOKEN_KINDS:  # the lesson, said even when it learned something
        text += (f" Its limit: {POOLED_LIMIT}; for questions about which attribute belongs to which object, use "
                 "an attention, bilinear or gated head.")
    return text


def head_notices(handle) -> list[Notice]:
    """What to say beside any answer of this head: that it is at chance on its task, and why."""
    text = chance_warning(getattr(handle, "meta", None) or {}, handle.kind)
    return [Notice("head_at_chance", text)] if text else []


def _with_ablations(arrays: dict[str, np.ndarray], modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Row 0 as given, then one row per modality with that modality's features zeroed:
    L2-normalised features make zero 'no evidence'. One batch, one forward pass."""
    out = {}
    for k, v in arrays.items():
        rows = [v] + [np.zeros_like(v) if k == m else v for m in modalities]
        out[k] = np.concatenate(rows)
    return out


def classify(handle, image, text, audio_input, clip, audio=None, *, inputs: Inputs | None = None,
             features: dict | None = None, token_tower=None) -> Classification:
    """Labels of one example from a fusion head, with each modality's ablation (its
    features replaced by zeros) and the head's own weights/gates/attention where it has them.
    ``inputs`` (already read by :func:`read_inputs`) and ``features`` (a dict the caller keeps)
    let one example go through several heads with one decode and one encoding per modality;
    ``token_tower``: the profile's image model for patch tokens (``Registry.token_tower``)."""
    mods = tuple(handle.modalities)
    if inputs is None:
        inputs = read_inputs(image, text, audio_input, audio_rate=rate_of(audio))
    missing = [m for m, v in (("image", inputs.image), ("text", inputs.text), ("audio", inputs.wave))
               if m in mods and v is None]
    if missing:
        raise MMDemoError("input_missing", f"Head {handle.name!r} uses {', '.join(mods)}; add the missing "
                                           f"{', '.join(missing)}.")
    if "audio" in mods and audio is None:
        raise MMDemoError("audio_model_missing", f"Head {handle.name!r} uses audio, but the active profile has no "
                                                 "audio model.")
    notices = list(inputs.notices)
    if inputs.wave is not None and "audio" not in mods:
        notices.append(Notice("audio_ignored", f"Head {handle.name!r} does not use audio; the clip was ignored."))
    if "text" in mods:
        notices += unknown_words_notice(clip, [inputs.text])
    tower = tower_for(handle, token_tower)  # pooled heads need no extra image pass
    feats, tokens, own_tokens = _single_features(inputs, mods, clip, audio, features, tower)
    tokens = tokens_read_by(handle, tokens)
    notices += _domain_notices(feats, own_tokens, inputs.wave, clip, audio)
    notices += head_notices(handle)
    probs = handle.predict(_with_ablations(feats, mods), _with_ablations(tokens, mods) or None)
    full, top = probs[0], int(probs[0].argmax())
    ablation = [{"modality": m, "labels": [{"label": lab, "score": float(s)} for lab, s in zip(handle.labels, p)],
                 "top_drop": float(full[top] - p[top])} for m, p in zip(mods, probs[1:])]
    explanation = _explanation(handle.explain(feats, tokens or None), mods)
    return Classification(handle.name, handle.kind, mods, ranked(full, handle.labels), ablation, explanation, notices)


@dataclass
class ZeroShotResult:
    labels: list[dict]  # fused, best first
    per_modality: dict[str, list[dict]]  # each modality alone, in label order
    weights: dict[str, float]  # the weights used (normalised to sum 1)
    prompts: list[str]
    notices: list[str] = field(default_factory=list)
    audio_prompts: list[str] = field(default_factory=list)  # what the audio was scored against, when it was
    templates: list[str] = field(default_factory=list)  # the template(s) averaged for each label

    def to_dict(self) -> dict:
        return {"labels": self.labels, "per_modality": self.per_modality, "weights": self.weights,
                "prompts": self.prompts, "audio_prompts": self.audio_prompts, "templates": self.templates,
                "notices": self.notices}


def shares_clip_space(audio, clip) -> bool:
    """Whether clips land in the CLIP's own text space (the tiny encoder was trained
    into it), rather than a space of their own (a CLAP)."""
    return getattr(audio, "space", None) == clip.model_id


def audio_prompts(prompts: list[str], names: list[str], audio, clip) -> list[str]:
    """The texts audio is scored against. Audio in the CLIP's text space was trained
    against that tower's prompts: it gets the same ones. Audio in its own space (a CLAP)
    gets ``AUDIO_TEMPLATE``, the template LAION's CLAPs were trained and evaluated with
    (and transformers' zero-shot audio pipeline uses): the template typed here is
    written for the image-text model ("a photo of {}") and would mislead a sound model."""
    if shares_clip_space(audio, clip):
        return prompts
    return [AUDIO_TEMPLATE.replace("{}", n) for n in names]


def zero_shot(image, text, audio_input, labels, clip, audio=None, *, weights: dict[str, float] | None = None,
              template: str = DEFAULT_TEMPLATE, templates: str | Sequence[str] | None = None) -> ZeroShotResult:
    """Score typed labels against a weighted sum of the normalised modality embeddings.

    Each modality is scored in its own space: image and text against the CLIP's text
    embeddings of the prompts, audio against its own model's text tower (prompts: see
    :func:`audio_prompts`). Per-modality probabilities are a softmax at that model's own
    logit scale (the CLIP's for image and text, the audio model's for audio: CLAP's
    differs from CLIP's). With w normalised to sum 1, the fused logit of label l is
    ``scale_s * sum_{m in s} w_m cos(e_m, t_l)`` summed over spaces s: within one space,
    the cosine of the weighted-sum embedding at that space's scale (for the tiny bundle,
    whose audio was trained into tiny-clip's text space, everything is in the CLIP's space
    at the CLIP's scale, as before); across spaces, each space's weighted logits add up
    (a weighted product of the per-space distributions).

    ``templates`` (one per line), when given, replace ``template``: each label's text
    embedding is the average of its prompts' (:mod:`mmdemo.tasks.prompts`, the CLIP paper's
    prompt ensembling); ``prompts`` then holds each label in the first template."""
    names, notices = parse_text_lines(labels, what="labels", max_items=MAX_CLASSES, max_chars=MAX_LABEL_CHARS)
    template = (template or "").strip() or DEFAULT_TEMPLATE
    if template.count("{}") != 1:
        raise MMDemoError("template_invalid", f"The prompt template must contain {{}} exactly once (got "
                                              f"{template!r}), e.g. 'a photo of {{}}'.")
    ensemble = parse_templates(templates, modality="image") or [template]
    prompts = [fill(ensemble[0], n) for n in names]
    inputs = read_inputs(image, text, audio_input, audio_rate=rate_of(audio))
    notices += inputs.notices
    w = {m: float((weights or {}).get(m, 1.0)) for m in MODALITIES}
    if any(v < 0 for v in w.values()):
        raise MMDemoError("weight_negative", "Modality weights must be zero or positive.")
    present = {"image": inputs.image is not None, "text": bool(inputs.text), "audio": inputs.wave is not None}
    if inputs.wave is not None and audio is None:
        notices.append(Notice("audio_ignored", "The active profile has no audio model; the clip was ignored."))
        present["audio"] = False
    used = {m: w[m] for m in MODALITIES if present[m] and w[m] > 0}
    if not any(present.values()):
        raise MMDemoError("input_missing", "Give at least one input: an image, a text or an audio clip.")
    if not used:
        raise MMDemoError("weights_all_zero", "Every given input has weight 0; raise at least one weight.")
    for m in MODALITIES:
        if present[m] and w[m] == 0:
            notices.append(Notice("weight_zero", f"The {m} has weight 0 and does not count.", m))
    # Spaces: the CLIP's (image, text, and audio trained into it) scores at the CLIP's
    # scale; audio in a space of its own (a CLAP's) at its own. An audio-only request
    # on CLAP never touches the CLIP (on a real profile, a download).
    in_clip = [m for m in used if m != "audio" or shares_clip_space(audio, clip)]
    # One notice for every text read (the tiny audio tower reads with the CLIP's words).
    notices += unknown_words_notice(clip if in_clip else audio, prompts_for(names, ensemble)
                                    + ([inputs.text] if "text" in used else []))
    clip_scale = float(clip.logit_scale) if in_clip else None
    sims, scale = {}, {}
    if "image" in used or "text" in used:
        label_emb = ensemble_embeddings(clip.encode_texts, names, ensemble)
    if "image" in used:
        notices += image_notice(clip, [inputs.image])
        sims["image"], scale["image"] = clip.encode_images([inputs.image])[0] @ label_emb.T, clip_scale
    if "text" in used:
        sims["text"], scale["text"] = clip.encode_texts([inputs.text])[0] @ label_emb.T, clip_scale
    a_prompts = []
    if "audio" in used:
        a_prompts = audio_prompts(prompts, names, audio, clip)
        audio_emb = audio.encode_waves([inputs.wave])
        notices += clip_notice(audio, inputs.wave)
        # Audio in the CLIP's text space gets the same ensemble; a CLAP its own one template.
        a_templates = ensemble if shares_clip_space(audio, clip) else [AUDIO_TEMPLATE]
        sims["audio"] = audio_emb[0] @ ensemble_embeddings(audio.encode_texts, names, a_templates).T
        scale["audio"] = float(audio.logit_scale)
    total = sum(used.values())
    norm_w = {m: used[m] / total for m in used}
    # Within the CLIP's space: the weighted-sum embedding's cosine at the CLIP's scale;
    # the other space adds its weighted cosines at its own scale.
    fused = sum(norm_w[m] * sims[m] for m in in_clip) * (clip_scale or 0.0)
    fused = fused + sum(scale[m] * norm_w[m] * sims[m] for m in used if m not in in_clip)
    per = {m: [{"label": n, "score": float(p)} for n, p in zip(names, softmax(scale[m] * sims[m]))] for m in used}
    return ZeroShotResult(ranked(softmax(fused), names), per, {m: round(v, 4) for m, v in norm_w.items()},
                          prompts, notices, a_prompts, ensemble)
