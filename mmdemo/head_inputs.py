"""What a fusion head reads, from the encoders: one function for every path that feeds a
head (training features, Classify, Compare, Folders), so they cannot drift apart.

Per modality: the pooled, L2-normalised vector, and a token sequence:
- image: patch tokens of the *token tower*, the profile's image model whose tokens carry
  each object (``tokens`` in the profile; the tiny bundle names its CoCa, whose tokens let a
  head tell a blue star beside a red circle from a red star beside a blue circle, and the
  tiny CLIP's do not: 0.97 vs 0.75 on scene_qa with the same head); else the CLIP's own;
- text: the CLIP text tower's last-layer word tokens, zero where the text has ended;
- audio: the audio tower's last-layer frame tokens.

Numpy in and out (the handles own their devices), no torch here: the task layer imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MODALITIES = ("image", "text", "audio")


@dataclass
class HeadInputs:
    pooled: dict[str, np.ndarray]  # {modality: [N, D]}
    tokens: dict[str, np.ndarray]  # {modality: [N, L, W]}, zero rows are padding
    # The CLIP's own image tokens, when the head's come from another tower: the CLIP's
    # "unlike its world" check is calibrated on them.
    clip_image_tokens: np.ndarray | None = None


def encode_for_heads(modalities: Sequence[str], clip, audio=None, token_tower=None, *, images=None, texts=None,
                     waves=None, batch_size: int = 64) -> HeadInputs:
    """Pooled vectors and token sequences of ``modalities`` for N examples (``images``: PIL,
    ``texts``: str, ``waves``: mono at the audio model's rate). ``token_tower``: where image
    tokens come from (None: the CLIP itself, one pass for both)."""
    pooled, tokens, clip_tokens = {}, {}, None
    if "image" in modalities:
        pooled["image"], clip_tokens = clip.encode_image_tokens(list(images), batch_size=batch_size)
        tokens["image"] = (clip_tokens if token_tower is None
                           else token_tower.encode_image_tokens(list(images), batch_size=batch_size)[1])
    if "text" in modalities:
        vec, words, mask = clip.encode_text_tokens(list(texts))
        pooled["text"], tokens["text"] = vec, np.asarray(words, np.float32) * np.asarray(mask, np.float32)[..., None]
    if "audio" in modalities:
        pooled["audio"], tokens["audio"] = audio.encode_wave_tokens(list(waves), batch_size=batch_size)
    return HeadInputs(pooled, tokens, clip_tokens if token_tower is not None else None)


def reads_tokens(config: dict | None) -> bool:
    """Whether a head of this config reads token sequences (older and pooled designs don't)."""
    return (config or {}).get("reads") == "tokens"


def tower_for(handle, token_tower):
    """The token tower to encode for ``handle``: the profile's for a head that reads tokens,
    None (the CLIP's own patches, no extra pass) for one that doesn't. A token head is refused
    another tower than the one it was trained on (its file records it): patch tokens of two
    towers mean different things, and the head would answer with confidence and be wrong."""
    from mmdemo.errors import MMDemoError

    if not reads_tokens((getattr(handle, "meta", None) or {}).get("config")):
        return None
    if "image" in handle.modalities:
        wanted = (getattr(handle, "encoder", None) or {}).get("tokens")
        given = token_tower.model_id if token_tower is not None else None
        if wanted != given:
            raise MMDemoError("head_token_tower_mismatch",
                              f"Head {handle.name!r} reads image tokens from {wanted or 'the CLIP itself'}, but was "
                              f"given {given or 'the CLIP itself'}; use the profile it was trained on.")
    return token_tower


def tokens_read_by(handle, tokens: dict) -> dict:
    """The token sequences ``handle``'s head reads from ``tokens`` (encoded with
    :func:`tower_for`'s tower): all of them for a token head; for the older pooled designs the
    image patches only (their attention read the CLIP's own patches; the rest ignore tokens)."""
    if reads_tokens((getattr(handle, "meta", None) or {}).get("config")):
        return tokens
    return {m: t for m, t in tokens.items() if m == "image"}


def head_encoder_ids(modalities: Sequence[str], clip, audio=None, token_tower=None) -> dict[str, str]:
    """{profile slot: model id} of the encoders a head trained on these inputs depends on
    (the registry refuses it under a profile with other ones)."""
    ids = {"clip": clip.model_id}
    if token_tower is not None and "image" in modalities:
        ids["tokens"] = token_tower.model_id
    if "audio" in modalities and audio is not None:
        ids["audio"] = audio.model_id
    return ids
