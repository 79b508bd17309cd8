"""Frozen encoder features for fusion heads: extracted once, in batches, kept as tensors.

Below both the task layer (which caches a user's dataset features) and the trainers
(which build the bundle's heads from the same features), so neither has to reach
into the other. The encoders come in as typed handles (numpy out); the tensors made
here stay on the CPU, where the trainers want them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mmdemo.atomic import atomic_save_file
from mmdemo.errors import MMDemoError
from mmdemo.weights import read_safetensors

FEATURES_META_KEY = "label_names"


@dataclass
class FeatureSet:
    pooled: dict[str, torch.Tensor]  # {modality: [N, D]} L2-normalised embeddings
    tokens: dict[str, torch.Tensor]  # {modality: [N, L, W]} token features (image patches)
    labels: torch.Tensor  # [N] class indices into label_names
    label_names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx) -> "FeatureSet":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return FeatureSet({k: v[idx] for k, v in self.pooled.items()}, {k: v[idx] for k, v in self.tokens.items()},
                          self.labels[idx], self.label_names)

    def only(self, modality: str) -> "FeatureSet":
        """One modality's pooled features alone: what a single-modality baseline sees."""
        return FeatureSet({modality: self.pooled[modality]}, {}, self.labels, self.label_names)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pooled)

    @property
    def embed_dim(self) -> int:
        return int(next(iter(self.pooled.values())).shape[1])

    def label_indices(self) -> np.ndarray:
        return self.labels.numpy()


def extract_features(examples: Sequence, clip, audio=None, *, label_names: list[str] | None = None,
                     batch_size: int = 128) -> FeatureSet:
    """A FeatureSet from examples with ``image`` (array or PIL), ``text``, optional
    ``audio`` (mono wave at the audio model's rate) and ``label`` attributes."""
    if not examples:
        raise MMDemoError("no_examples", "No examples to extract features from.")
    images = [e.image if isinstance(e.image, Image.Image) else Image.fromarray(np.asarray(e.image))
              for e in examples]
    img, img_tokens = clip.encode_image_tokens(images, batch_size=batch_size)
    txt = clip.encode_texts([e.text for e in examples], batch_size=batch_size)
    pooled = {"image": torch.from_numpy(img), "text": torch.from_numpy(txt)}
    tokens = {"image": torch.from_numpy(img_tokens)}
    if audio is not None:
        if any(getattr(e, "audio", None) is None for e in examples):
            raise MMDemoError("audio_missing", "Every example needs audio for a head that uses audio.")
        pooled["audio"] = torch.from_numpy(audio.encode_waves([e.audio for e in examples], batch_size=batch_size))
    names = label_names or sorted({e.label for e in examples})
    index = {n: i for i, n in enumerate(names)}
    labels = torch.tensor([index[e.label] for e in examples], dtype=torch.long)
    return FeatureSet(pooled=pooled, tokens=tokens, labels=labels, label_names=list(names))


def concat_features(parts: Sequence[FeatureSet]) -> FeatureSet:
    """The parts (extracted batch by batch, same modalities and labels) as one set."""
    if not parts:
        raise MMDemoError("no_examples", "No features to join.")
    first = parts[0]
    return FeatureSet(pooled={m: torch.cat([p.pooled[m] for p in parts]) for m in first.pooled},
                      tokens={m: torch.cat([p.tokens[m] for p in parts]) for m in first.tokens},
                      labels=torch.cat([p.labels for p in parts]), label_names=list(first.label_names))


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    """A FeatureSet as one safetensors file (atomically). Tokens are stored as float16:
    they are the bulk of the bytes and attention heads lose nothing measurable from it."""
    tensors = {f"pooled.{m}": t for m, t in fs.pooled.items()}
    tensors.update({f"tokens.{m}": t.half() for m, t in fs.tokens.items()})
    tensors["labels"] = fs.labels
    return atomic_save_file(tensors, path, {FEATURES_META_KEY: json.dumps(fs.label_names)})


def read_features(path: str | Path) -> FeatureSet:
    """A FeatureSet written by :func:`save_features`, as float32 again."""
    t, names = read_safetensors(path, FEATURES_META_KEY, "feature file")
    if not isinstance(names, list) or "labels" not in t:
        raise MMDemoError("not_features", f"{Path(path).name} is not an mmdemo feature file (no label names).")
    return FeatureSet(pooled={k[7:]: v.float() for k, v in t.items() if k.startswith("pooled.")},
                      tokens={k[7:]: v.float() for k, v in t.items() if k.startswith("tokens.")},
                      labels=t["labels"].long(), label_names=names)
