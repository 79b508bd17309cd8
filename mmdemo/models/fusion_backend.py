"""Fusion heads behind the registry: a :class:`mmdemo.handles.FusionHandle` per head file.

The handle owns its head's device: callers hand it numpy features, it moves them
there, runs the head under ``torch.inference_mode()`` and hands back numpy on the
CPU, so the task layer works the same on cpu, cuda and mps without importing torch.
Whether a head fits the active encoders is the registry's question (it holds the
profile: ``Registry.check_fits_profile``); this layer only loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmdemo.catalog import EntrySpec
from mmdemo.scores import softmax
from mmdemo.weights import FILE, require_weights


class FusionHandle:
    def __init__(self, name: str, head, meta: dict):
        self.name, self.head, self.meta = name, head, meta
        self.labels: list[str] = list(meta["labels"])
        self.modalities: tuple[str, ...] = tuple(meta["modalities"])
        self.kind: str = meta["config"]["kind"]
        self.encoder: dict = dict(meta.get("encoder", {}))
        self.device: str = str(next(head.parameters()).device)

    def modules(self):
        return [self.head]

    def _tensors(self, arrays: dict[str, np.ndarray] | None) -> dict[str, torch.Tensor] | None:
        if not arrays:
            return None
        return {k: torch.as_tensor(np.asarray(v, np.float32), device=self.device) for k, v in arrays.items()}

    def predict(self, feats: dict[str, np.ndarray], tokens: dict[str, np.ndarray] | None = None) -> np.ndarray:
        with torch.inference_mode():
            logits = self.head(self._tensors(feats), self._tensors(tokens))
            return softmax(logits.float().cpu().numpy())

    def explain(self, feats: dict[str, np.ndarray], tokens: dict[str, np.ndarray] | None = None) -> dict:
        with torch.inference_mode():
            raw = self.head.explain(self._tensors(feats), self._tensors(tokens))
        return {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in raw.items()}


def handle_from_file(path: str | Path, device: str = "cpu", name: str | None = None) -> FusionHandle:
    """A head file (validated, never unpickled) as a handle on ``device``."""
    from mmdemo.models.fusion import load_head

    path = Path(path)
    head, meta = load_head(path, device=device)
    return FusionHandle(name or path.stem, head, meta)


def load_fusion(spec: EntrySpec, device: str, deps: dict | None = None) -> FusionHandle:
    """The registry's backend for fusion heads (they need no other entry loaded)."""
    source = require_weights(spec, (FILE,), file_label="Head file")
    return handle_from_file(source.location, device, spec.name)
