"""Audio encoders behind the registry: clips -> embeddings in a text space.

The embedded bundle's encoder maps log-mel windows into tiny-clip's text space, so
its text side is simply that CLIP's text tower (``requires = {text = ...}``). A real
audio-text model (e.g. a CLAP checkpoint) would be another backend returning an
object with the same methods; the Audio tab only uses this interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError


class AudioHandle:
    sample_rate: int
    window_seconds: float

    def __init__(self, tower, meta: dict, device: str, model_id: str, text):
        from mmdemo.models import audio_tower as at

        self.tower, self.meta, self.device, self.model_id, self.text = tower, meta, device, model_id, text
        self.sample_rate = at.SAMPLE_RATE
        self.window_seconds = at.WINDOW_SECONDS
        self._n_frames = at.frames_for(at.WINDOW_SECONDS)
        self.logit_scale = float(meta.get("logit_scale", 1 / 0.07))

    @classmethod
    def from_file(cls, path: Path, device: str, model_id: str, text) -> "AudioHandle":
        from mmdemo.models.audio_tower import load_audio_tower

        tower, meta = load_audio_tower(path, device=device)
        return cls(tower, meta, device, model_id, text)

    def modules(self):
        return [self.tower]

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """The log-mel picture the model sees for one window (also shown in the UI)."""
        from mmdemo.models.audio_tower import fit_frames, log_mel

        return fit_frames(log_mel(np.asarray(wave, np.float32)), self._n_frames)

    def encode_waves(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings [N, D] of mono clips at ``sample_rate`` (first window each)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(waves), batch_size):
                mels = np.stack([self.mel(w) for w in waves[start:start + batch_size]])
                emb = self.tower(torch.from_numpy(mels).to(self.device))
                out.append(F.normalize(emb, dim=-1).float().cpu().numpy())
        if not out:
            raise MMDemoError("No audio to encode.")
        return np.concatenate(out)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.encode_texts(texts)

    def zero_shot(self, audio_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        logits = self.logit_scale * audio_embs @ text_embs.T
        logits = logits - logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=-1, keepdims=True)


def load_audio(spec: EntrySpec, device: str, registry=None) -> AudioHandle:
    if spec.weights is None or not spec.weights.is_file():
        raise MMDemoError(f"Weights file for {spec.name!r} not found: {spec.weights}")
    text_name = spec.requires.get("text")
    if not text_name or registry is None:
        raise MMDemoError(f"Audio model {spec.name!r} must name its text encoder (requires = {{text = ...}}).")
    return AudioHandle.from_file(spec.weights, device, spec.model_id, registry.get(text_name))
