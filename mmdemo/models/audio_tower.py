"""The embedded audio encoder: log-mel features (+ a pitch picture and the peak level)
-> small conv + transformer -> a vector in the CLIP text space (trained against
tiny-clip's text tower).

What it reads, per 10 ms frame (:func:`model_inputs`):
- 64 log-mel rows: timbre, noise colour, clicks, roughly where the pitch lies;
- 96 pitch rows, quarter-tones from 100 to 1,600 Hz out of a long (256 ms) FFT, in log
  power relative to the frame's strongest quarter-tone: 64 mel bands put a major and a
  minor third (a quarter-tone apart at 260 Hz) into the same band, so chords were at
  chance without them; relative to the frame's peak, they show *which* notes sound,
  whatever the level;
- 1 row of the frame's sample peak in dBFS: "quiet" and "loud" are defined by the
  clip's peak (toyworld/meanings.py), which mel energy alone confuses with timbre (a
  noise burst and a sine with one peak differ by 9 dB of energy).
A tower built without them (``pitch_bins=0``, the older bundle) reads the mel rows only.
"""

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
PITCH_BINS = 96  # quarter-tones from PITCH_LOW_HZ, four octaves
PITCH_LOW_HZ = 100.0
PITCH_N_FFT = 4096  # 3.9 Hz per FFT bin at 16 kHz: a quarter-tone at 100 Hz is 2.9 Hz wide
PITCH_FLOOR = -12.0  # natural-log power below the frame's strongest quarter-tone
PEAK_FLOOR_DB = -80.0


def frames_for(seconds: float) -> int:
    return int(seconds * SAMPLE_RATE) // HOP + 1


def log_mel(wave: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """float32 [N_MELS, T]: natural log of mel power (+``eps``). Plain log rather than
    power_to_db's max-referenced dB, so loud and quiet clips stay distinguishable."""
    import librosa

    wave = np.asarray(wave, np.float32)
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                         fmin=20.0, fmax=8000.0, power=2.0)
    return np.log(mel + eps).astype(np.float32)


def pitch_spectrum(wave: np.ndarray) -> np.ndarray:
    """float32 [PITCH_BINS, T] (T as :func:`log_mel`): log power at each quarter-tone,
    relative to the frame's strongest, floored at PITCH_FLOOR (silence: all floor)."""
    import librosa

    wave = np.asarray(wave, np.float32)
    n = wave.size
    if n < PITCH_N_FFT:  # a short clip: silence after it (callers trim to log_mel's frames)
        wave = np.pad(wave, (0, PITCH_N_FFT - n))
    power = np.abs(librosa.stft(wave, n_fft=PITCH_N_FFT, hop_length=HOP, center=True)) ** 2
    # Fractional FFT bin of each quarter-tone, read by linear interpolation between bins.
    where = PITCH_LOW_HZ * 2 ** (np.arange(PITCH_BINS) / 24) * PITCH_N_FFT / SAMPLE_RATE
    lo = np.floor(where).astype(int)
    frac = (where - lo)[:, None]
    q = (1 - frac) * power[lo] + frac * power[lo + 1]
    top = q.max(axis=0, keepdims=True)
    rel = np.log(q + 1e-10) - np.log(top + 1e-10)
    rel[:, top[0] < 1e-8] = PITCH_FLOOR  # a silent frame has no notes
    return np.maximum(rel, PITCH_FLOOR).astype(np.float32)


def frame_peaks(wave: np.ndarray, n_frames: int) -> np.ndarray:
    """float32 [1, n_frames]: each frame's largest |sample| (25 ms around its centre) in dBFS."""
    wave = np.abs(np.asarray(wave, np.float32))
    padded = np.pad(wave, (N_FFT // 2, N_FFT // 2 + n_frames * HOP))
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    peak = padded[idx].max(axis=1)
    return np.maximum(20 * np.log10(peak + 1e-12), PEAK_FLOOR_DB)[None].astype(np.float32)


def model_inputs(wave: np.ndarray, pitch: bool = True) -> np.ndarray:
    """float32 [rows, T]: the log-mel rows, then (``pitch``) the pitch rows and the peak row."""
    mel = log_mel(wave)
    if not pitch:
        return mel
    return np.concatenate([mel, pitch_spectrum(wave)[:, :mel.shape[1]], frame_peaks(wave, mel.shape[1])])


def input_rows(pitch: bool = True) -> int:
    """How many rows :func:`model_inputs` gives."""
    return N_MELS + (PITCH_BINS + 1 if pitch else 0)


def familiar_frames(wave: np.ndarray) -> np.ndarray:
    """[T', N_MELS] float32: the clip's non-silent log-mel frames, each relative to the
    clip's loudest mel value, for mmdemo.familiarity.FrameFamiliarity (the level is left
    out: quiet and loud mean the same kind of sound)."""
    # A floor far below any clip's quietest band: frames of a quiet clip look like a loud one's.
    mel = log_mel(wave, eps=1e-12)
    if mel.max() < np.log(1e-10):  # digital silence: no frames to judge
        return np.zeros((0, N_MELS), np.float32)
    rel = np.maximum(mel - mel.max(), PITCH_FLOOR)
    keep = rel.max(axis=0) > PITCH_FLOOR + 6  # frames with something in them
    return rel[:, keep].T.astype(np.float32)


def fit_frames(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """Crop or pad (with silence) along time to exactly ``n_frames``."""
    if mel.shape[1] >= n_frames:
        return mel[:, :n_frames]
    pad = np.full((mel.shape[0], n_frames - mel.shape[1]), LOG_FLOOR, np.float32)
    if mel.shape[0] == input_rows():  # silence in every row: no notes, the peak floor
        pad[N_MELS:N_MELS + PITCH_BINS] = PITCH_FLOOR
        pad[-1] = PEAK_FLOOR_DB
    return np.concatenate([mel, pad], axis=1)


class AudioTower(nn.Module):
    def __init__(self, embed_dim: int = 128, width: int = 128, n_mels: int = N_MELS,
                 n_frames: int = frames_for(WINDOW_SECONDS), layers: int = 3, heads: int = 4,
                 pitch_bins: int = 0, pitch_channels: int = 16):
        super().__init__()
        self._config = dict(embed_dim=embed_dim, width=width, n_mels=n_mels, n_frames=n_frames, layers=layers,
                            heads=heads)
        # Normalise the log-mel scale (roughly -14..+6) before the convolutions.
        self.register_buffer("shift", torch.tensor(-6.0))
        self.register_buffer("scale", torch.tensor(4.0))
        self.pitch_bins = int(pitch_bins)
        if self.pitch_bins:
            self._config.update(pitch_bins=self.pitch_bins, pitch_channels=int(pitch_channels))
            # The pitch picture as an image: 2-D convolutions see a chord's intervals (a
            # pattern across quarter-tones) wherever its root is; strides match the stem's 8.
            c = int(pitch_channels)
            self.pitch = nn.Sequential(
                nn.Conv2d(1, c, (5, 5), stride=(2, 2), padding=(2, 2)), nn.GELU(),
                nn.Conv2d(c, c, (5, 9), stride=(2, 4), padding=(2, 4)), nn.GELU(),
            )
            self.pitch_proj = nn.Linear(c * ((pitch_bins + 3) // 4), width)
        self.stem = nn.Sequential(
            nn.Conv1d(n_mels + (1 if self.pitch_bins else 0), width, 5, stride=2, padding=2), nn.GELU(),
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

    @property
    def reads_pitch(self) -> bool:
        return bool(self.pitch_bins)

    def forward(self, inputs: torch.Tensor, return_tokens: bool = False):
        """``inputs``: [B, rows, T] from :func:`model_inputs` (mel rows only when built
        without pitch)."""
        n_mels = self._config["n_mels"]
        mel = (inputs[:, :n_mels] - self.shift) / self.scale
        if self.pitch_bins:
            peak = (inputs[:, n_mels + self.pitch_bins:] + 30.0) / 15.0  # dBFS, about -3..+2
            x = self.stem(torch.cat([mel, peak], 1)).transpose(1, 2)  # [B, L, W]
            pitch = inputs[:, n_mels:n_mels + self.pitch_bins].unsqueeze(1) / -PITCH_FLOOR + 0.5
            p = self.pitch(pitch)  # [B, C, bins/4, L]
            x = x + self.pitch_proj(p.flatten(1, 2).transpose(1, 2))
        else:
            x = self.stem(mel).transpose(1, 2)  # [B, L, W]
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
