"""Said next to a result whose input lies outside the model's world.

The tiny bundle answers a photo of a cat in its own words (shapes and colours), as
confidently as it answers a scene it was trained on. When the model knows where its
world's inputs lie (``mmdemo/familiarity.py``: a threshold calibrated on held-out
in-world inputs and reported in the model card), the tasks say so beside the result.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmdemo.errors import Notice

_WORLD = {"image": "generated shapes on patterned backgrounds", "clip": "generated tones, chirps, noises, "
          "clicks and chords"}


def unfamiliar_notice(flags: Sequence[bool] | None, what: str, *, many: str | None = None) -> list[Notice]:
    """``flags``: per input, whether it looks unlike the model's world (None: unknown).
    ``what``: "image" or "clip"; ``many``: how to name several (e.g. "gallery images")."""
    if not flags or not any(flags):
        return []
    world = _WORLD.get(what, "its generated world")
    if len(flags) == 1:
        text = (f"This {what} looks unlike anything the model was trained on ({world}), so its result says "
                "little about it. The model card says what the tiny model knows.")
    else:
        text = (f"{sum(flags)} of {len(flags)} {many or what + 's'} look unlike anything the model was trained on "
                f"({world}); results about them say little.")
    return [Notice("input_unfamiliar", text)]


def image_notice(model, images: Sequence, *, many: str | None = None) -> list[Notice]:
    """``model`` (a CLIP or captioner handle) judges the images through its own image tower."""
    find = getattr(model, "unfamiliar_images", None)
    return unfamiliar_notice(find(list(images)) if find is not None else None, "image", many=many)


def image_tokens_notice(model, image_tokens: np.ndarray) -> list[Notice]:
    """:func:`image_notice` for one image whose tokens the caller already has (no second pass)."""
    find = getattr(model, "unfamiliar_tokens", None)
    return unfamiliar_notice(find(image_tokens) if find is not None else None, "image")


def clip_notice(audio, wave: np.ndarray) -> list[Notice]:
    """One clip (mono at the model's rate, whole), judged by the audio model itself."""
    find = getattr(audio, "unfamiliar_waves", None)
    flags = find([wave]) if find is not None else None
    return unfamiliar_notice(flags, "clip")
