"""The embedded audio encoder: log-mel features -> small conv + transformer -> a
vector in the CLIP text space (trained against tiny-clip's text tower)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmdemo.errors import MMDemoError

SAMPLE_RATE = 16000
N_MELS = 64
HOP = 160  # 10 ms frames
N_FFT = 400  # 25 ms windows
WINDOW_SECONDS = 4.0
LOG_FLOOR = math.log(1e-6)


def frames_for(seconds: float) -> int:
    return int(seconds * SAMPLE_RATE) // HOP + 1


def log_mel(wave: np.ndarray) -> np.ndarray:
    """float32 [N_MELS, T]: natural log of mel power (+1e-6). Plain log rather than
    power_to_db's max-referenced dB, so loud and quiet clips stay distinguishable."""
    import librosa

    wave = np.asarray(wave, np.float32)
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                         fmin=20.0, fmax=8000.0, power=2.0)
    return np.log(mel + 1e-6).astype(np.float32)


def fit_frames(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """Crop or pad (with silence) along time to exactly ``n_frames``."""
    if mel.shape[1] >= n_frames:
        return mel[:, :n_frames]
    return np.pad(mel, ((0, 0), (0, n_frames - mel.shape[1])), constant_values=LOG_FLOOR)


class AudioTower(nn.Module):
    def __init__(self, embed_dim: int = 128, width: int = 128, n_mels: int = N_MELS,
                 n_frames: int = frames_for(WINDOW_SECONDS), layers: int = 3, heads: int = 4):
        super().__init__()
        self._config = dict(embed_dim=embed_dim, width=width, n_mels=n_mels, n_frames=n_frames, layers=layers,
                            heads=heads)
        # Normalise the log-mel scale (roughly -14..+6) before the convolutions.
        self.register_buffer("shift", torch.tensor(-6.0))
        self.register_buffer("scale", torch.tensor(4.0))
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels, width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 9, stride=4, padding=4), nn.GELU(),
        )
        n_tokens = (n_frames + 7) // 8 + 1
        self.pos = nn.Parameter(torch.randn(1, n_tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, width * 4, dropout=0.0, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim)

    def config(self) -> dict:
        return dict(self._config)

    @classmethod
    def from_config(cls, cfg: dict) -> "AudioTower":
        return cls(**cfg)

    def forward(self, mel: torch.Tensor, return_tokens: bool = False):
        x = self.stem((mel - self.shift) / self.scale).transpose(1, 2)  # [B, L, W]
        x = x + self.pos[:, : x.shape[1]]
        x = self.norm(self.encoder(x))
        emb = self.proj(x.mean(dim=1))
        return (emb, x) if return_tokens else emb


def save_audio_tower(model: AudioTower, path: str | Path, extra_meta: dict | None = None) -> None:
    from mmdemo.atomic import atomic_save_file

    meta = {"config": model.config(), **(extra_meta or {})}
    atomic_save_file(dict(model.state_dict()), path, {"format": "pt", "mmdemo_audio": json.dumps(meta)})


def load_audio_tower(path: str | Path, device: str = "cpu") -> tuple[AudioTower, dict]:
    from mmdemo.weights import read_safetensors

    path = Path(path)
    state, meta = read_safetensors(path, "mmdemo_audio", "audio encoder")
    if not isinstance(meta, dict) or "config" not in meta:
        raise MMDemoError("not_audio_encoder",
                          f"{path.name} is not an mmdemo audio encoder (no mmdemo_audio metadata).")
    model = AudioTower.from_config(meta["config"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MMDemoError("weights_config_mismatch", f"{path.name}: weights don't match its config ({exc}).") from None
    return model.to(device).eval(), meta
