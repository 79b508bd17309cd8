"""Frozen encoder features for fusion heads: extracted once, in batches, kept as tensors.

Below both the task layer (which caches a user's dataset features) and the trainers
(which build the bundle's heads from the same features), so neither has to reach
into the other. The encoders come in as typed handles (numpy out); the tensors made
here stay on the CPU, where the trainers want them.

A FeatureSet also records each modality's embedding space (image and text: the CLIP's
model id; audio: the audio handle's ``space``), so fusion heads multiply vectors
elementwise only within one space. Files and sets without spaces (written before they
were recorded) count as one shared space, which is what they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mmdemo.atomic import atomic_save_file
from mmdemo.errors import MMDemoError
from mmdemo.weights import read_safetensors

FEATURES_META_KEY = "label_names"
SPACES_META_KEY = "spaces"


@dataclass
class FeatureSet:
    pooled: dict[str, torch.Tensor]  # {modality: [N, D]} L2-normalised embeddings
    tokens: dict[str, torch.Tensor]  # {modality: [N, L, W]} token features (patches, words, frames; 0 = padding)
    labels: torch.Tensor  # [N] class indices into label_names
    label_names: list[str]
    spaces: dict[str, str] = field(default_factory=dict)  # {modality: space id}; empty = one shared space

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx) -> "FeatureSet":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return FeatureSet({k: v[idx] for k, v in self.pooled.items()}, {k: v[idx] for k, v in self.tokens.items()},
                          self.labels[idx], self.label_names, dict(self.spaces))

    def only(self, modality: str) -> "FeatureSet":
        """One modality's pooled features alone: what a single-modality baseline sees."""
        spaces = {modality: self.spaces[modality]} if modality in self.spaces else {}
        return FeatureSet({modality: self.pooled[modality]}, {}, self.labels, self.label_names, spaces)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pooled)

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(t.shape[1]) for m, t in self.pooled.items()}

    def label_indices(self) -> np.ndarray:
        return self.labels.numpy()


def encoder_spaces(clip, audio=None) -> dict[str, str]:
    """{modality: space id} of what these encoders produce. An audio handle without a
    ``space`` is taken to be in a space of its own (never compared raw with the CLIP's)."""
    spaces = {"image": clip.model_id, "text": clip.model_id}
    if audio is not None:
        spaces["audio"] = str(getattr(audio, "space", None) or audio.model_id)
    return spaces


def extract_features(examples: Sequence, clip, audio=None, *, label_names: list[str] | None = None,
                     batch_size: int = 128, token_tower=None) -> FeatureSet:
    """A FeatureSet from examples with ``image`` (array or PIL), ``text``, optional
    ``audio`` (mono wave at the audio model's rate) and ``label`` attributes: pooled vectors
    and token sequences as :func:`mmdemo.head_inputs.encode_for_heads` makes them for every
    head (``token_tower``: the profile's image model for patch tokens; None: the CLIP)."""
    from mmdemo.head_inputs import encode_for_heads

    if not examples:
        raise MMDemoError("no_examples", "No examples to extract features from.")
    images = [e.image if isinstance(e.image, Image.Image) else Image.fromarray(np.asarray(e.image))
              for e in examples]
    modalities = ["image", "text"]
    if audio is not None:
        if any(getattr(e, "audio", None) is None for e in examples):
            raise MMDemoError("audio_missing", "Every example needs audio for a head that uses audio.")
        modalities.append("audio")
    enc = encode_for_heads(modalities, clip, audio, token_tower, images=images, texts=[e.text for e in examples],
                           waves=[getattr(e, "audio", None) for e in examples], batch_size=batch_size)
    pooled = {m: torch.from_numpy(np.asarray(v, np.float32)) for m, v in enc.pooled.items()}
    tokens = {m: torch.from_numpy(np.asarray(v, np.float32)) for m, v in enc.tokens.items()}
    names = label_names or sorted({e.label for e in examples})
    index = {n: i for i, n in enumerate(names)}
    labels = torch.tensor([index[e.label] for e in examples], dtype=torch.long)
    spaces = {m: s for m, s in encoder_spaces(clip, audio).items() if m in pooled}
    return FeatureSet(pooled=pooled, tokens=tokens, labels=labels, label_names=list(names), spaces=spaces)


def concat_features(parts: Sequence[FeatureSet]) -> FeatureSet:
    """The parts (extracted batch by batch, same modalities and labels) as one set."""
    if not parts:
        raise MMDemoError("no_examples", "No features to join.")
    first = parts[0]
    return FeatureSet(pooled={m: torch.cat([p.pooled[m] for p in parts]) for m in first.pooled},
                      tokens={m: torch.cat([p.tokens[m] for p in parts]) for m in first.tokens},
                      labels=torch.cat([p.labels for p in parts]), label_names=list(first.label_names),
                      spaces=dict(first.spaces))


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    """A FeatureSet as one safetensors file (atomically). Tokens are stored as float16:
    they are the bulk of the bytes and attention heads lose nothing measurable from it."""
    tensors = {f"pooled.{m}": t for m, t in fs.pooled.items()}
    tensors.update({f"tokens.{m}": t.half() for m, t in fs.tokens.items()})
    tensors["labels"] = fs.labels
    meta = {FEATURES_META_KEY: json.dumps(fs.label_names)}
    if fs.spaces:
        meta[SPACES_META_KEY] = json.dumps(fs.spaces)
    return atomic_save_file(tensors, path, meta)


def read_features(path: str | Path) -> FeatureSet:
    """A FeatureSet written by :func:`save_features`, as float32 again (without recorded
    spaces, as an older file: one shared space)."""
    t, names = read_safetensors(path, FEATURES_META_KEY, "feature file")
    if not isinstance(names, list) or "labels" not in t:
        raise MMDemoError("not_features", f"{Path(path).name} is not an mmdemo feature file (no label names).")
    pooled = {k[7:]: v.float() for k, v in t.items() if k.startswith("pooled.")}
    spaces = _spaces_of(path)
    if set(spaces) != set(pooled):
        spaces = {}
    return FeatureSet(pooled=pooled, tokens={k[7:]: v.float() for k, v in t.items() if k.startswith("tokens.")},
                      labels=t["labels"].long(), label_names=names, spaces={m: str(s) for m, s in spaces.items()})


def _spaces_of(path: str | Path) -> dict:
    """The recorded spaces (the header only: the tensors were read already), or {}."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            spaces = json.loads((f.metadata() or {}).get(SPACES_META_KEY) or "{}")
    except Exception:  # read once already; a bad entry here only means "no spaces recorded"
        return {}
    return spaces if isinstance(spaces, dict) else {}
