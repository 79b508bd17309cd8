"""Audio encoders behind the registry: clips -> embeddings in a text space.

The embedded bundle's encoder maps log-mel windows into tiny-clip's text space, so
its text side is simply that CLIP's text tower (``requires = {text = ...}``): the
registry loads that entry and hands it over; this module never sees the registry.
A real audio-text model (a CLAP checkpoint, :mod:`mmdemo.models.clap_backend`) is
another backend returning a ``mmdemo.handles.AudioHandle``; the Audio tab only uses that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmdemo.catalog import EntrySpec
from mmdemo.errors import MMDemoError
from mmdemo.familiarity import FrameFamiliarity, load_beside
from mmdemo.models import audio_tower as at
from mmdemo.scores import softmax
from mmdemo.weights import FILE, require_weights


class TinyAudioHandle:
    """The embedded log-mel audio tower, with a CLIP's text tower as its text side
    (a :class:`mmdemo.handles.AudioHandle`)."""

    sample_rate: int = at.SAMPLE_RATE
    window_seconds: float = at.WINDOW_SECONDS

    def __init__(self, tower, meta: dict, device: str, model_id: str, text):
        self.tower, self.meta, self.device, self.model_id, self.text = tower, meta, device, model_id, text
        self._n_frames = at.frames_for(at.WINDOW_SECONDS)
        self.logit_scale = float(meta.get("logit_scale", 1 / 0.07))
        self.space = text.model_id  # trained into that CLIP's text space
        self.familiarity = None  # where its in-world clips lie (mmdemo/familiarity.py)

    @classmethod
    def from_file(cls, path: Path, device: str, model_id: str, text) -> "TinyAudioHandle":
        tower, meta = at.load_audio_tower(path, device=device)
        handle = cls(tower, meta, device, model_id, text)
        handle.familiarity = load_beside(path)
        return handle

    def unfamiliar_waves(self, waves: Sequence[np.ndarray]) -> list[bool] | None:
        """Which clips (mono at ``sample_rate``, whole) sound unlike the world the model
        was trained on (None: no bounds are known). Judged by their frames
        (familiarity.FrameFamiliarity); an older bundle's file, by the first window's embedding."""
        fam = self.familiarity
        if fam is None:
            return None
        if isinstance(fam, FrameFamiliarity):
            return fam.unfamiliar_clips([at.familiar_frames(np.asarray(w, np.float32)) for w in waves])
        return fam.unfamiliar(self.encode_waves(list(waves)))

    def modules(self):
        return [self.tower]

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """The log-mel picture the model sees for one window (also shown in the UI)."""
        return at.fit_frames(at.log_mel(np.asarray(wave, np.float32)), self._n_frames)

    def inputs(self, wave: np.ndarray) -> np.ndarray:
        """Everything the tower reads for one window: the log-mel picture, and the pitch
        and peak rows when it was built with them."""
        return at.fit_frames(at.model_inputs(np.asarray(wave, np.float32), pitch=self.tower.reads_pitch),
                             self._n_frames)

    def encode_waves(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings [N, D] of mono clips at ``sample_rate`` (first window each)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(waves), batch_size):
                mels = np.stack([self.inputs(w) for w in waves[start:start + batch_size]])
                emb = self.tower(torch.from_numpy(mels).to(self.device))
                out.append(F.normalize(emb, dim=-1).float().cpu().numpy())
        if not out:
            raise MMDemoError("audio_empty", "No audio to encode.")
        return np.concatenate(out)

    def encode_wave_tokens(self, waves: Sequence[np.ndarray], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised embeddings [N, D], last-layer frame tokens [N, L, W]) in one pass,
        for fusion heads that attend over time."""
        pooled, tokens = [], []
        with torch.inference_mode():
            for start in range(0, len(waves), batch_size):
                mels = np.stack([self.inputs(w) for w in waves[start:start + batch_size]])
                emb, frames = self.tower(torch.from_numpy(mels).to(self.device), return_tokens=True)
                pooled.append(F.normalize(emb, dim=-1).float().cpu().numpy())
                tokens.append(frames.float().cpu().numpy())
        if not pooled:
            raise MMDemoError("audio_empty", "No audio to encode.")
        return np.concatenate(pooled), np.concatenate(tokens)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.encode_texts(texts)

    def unknown_words(self, texts: Sequence[str]) -> list[str]:
        """Its text side's unknown words (see OpenClipHandle.unknown_words)."""
        find = getattr(self.text, "unknown_words", None)
        return find(texts) if find is not None else []

    def zero_shot(self, audio_embs: np.ndarray, text_embs: np.ndarray) -> np.ndarray:
        return softmax(self.logit_scale * np.asarray(audio_embs) @ np.asarray(text_embs).T)


def load_audio(spec: EntrySpec, device: str, deps: dict | None = None) -> TinyAudioHandle:
    """``deps["text"]``: the loaded text encoder its ``requires = {text = ...}`` names."""
    source = require_weights(spec, (FILE,))
    text = (deps or {}).get("text")
    if text is None:
        raise MMDemoError("audio_text_encoder_missing", f"Audio model {spec.name!r} must name its text encoder "
                                                        "(requires = {text = ...}).")
    return TinyAudioHandle.from_file(Path(source.location), device, spec.model_id, text)
