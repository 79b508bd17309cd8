"""Frozen encoder features for fusion heads, extracted once, in batches."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from mmdemo.errors import MMDemoError


def extract_features(examples: Sequence, clip, audio=None, *, label_names: list[str] | None = None,
                     batch_size: int = 128):
    """A FeatureSet from examples with ``image`` (array or PIL), ``text``, optional
    ``audio`` (mono wave at the audio model's rate) and ``label`` attributes."""
    import torch

    from mmdemo.training.fusion_trainer import FeatureSet

    if not examples:
        raise MMDemoError("No examples to extract features from.")
    images = [e.image if isinstance(e.image, Image.Image) else Image.fromarray(np.asarray(e.image))
              for e in examples]
    img, img_tokens = clip.encode_image_tokens(images, batch_size=batch_size)
    txt = clip.encode_texts([e.text for e in examples], batch_size=batch_size)
    pooled = {"image": torch.from_numpy(img), "text": torch.from_numpy(txt)}
    tokens = {"image": torch.from_numpy(img_tokens)}
    if audio is not None:
        if any(getattr(e, "audio", None) is None for e in examples):
            raise MMDemoError("Every example needs audio for a head that uses audio.")
        pooled["audio"] = torch.from_numpy(audio.encode_waves([e.audio for e in examples], batch_size=batch_size))
    names = label_names or sorted({e.label for e in examples})
    index = {n: i for i, n in enumerate(names)}
    labels = torch.tensor([index[e.label] for e in examples], dtype=torch.long)
    return FeatureSet(pooled=pooled, tokens=tokens, labels=labels, label_names=list(names))
