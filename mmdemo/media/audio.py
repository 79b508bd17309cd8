"""Audio users upload or record, decoded to mono float32 at the rate a model wants.

Files are decoded from disk (only the first ``max_seconds`` are read), bytes and
gradio's ``(sample_rate, samples)`` tuples alike; silence, clipping, unnormalised
floats and over-long clips come back as notices rather than refusals.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmdemo.errors import MMDemoError, Notice
from mmdemo.media.files import display_name, read_source_bytes

__all__ = ["AUDIO_SUFFIXES", "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "AudioClip", "load_audio"]

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a"})
_AUDIO_KINDS = "WAV, FLAC, OGG, MP3"

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
_SILENCE_PEAK = 1e-4
_CLIP_LEVEL = 0.999
_CLIP_FRACTION = 0.001


@dataclass
class AudioClip:
    """Mono float32 audio at ``sample_rate``, with what the UI should know about it."""

    wave: np.ndarray
    sample_rate: int
    duration: float
    name: str
    original_sample_rate: int
    channels: int
    notices: list[str] = field(default_factory=list)
    truncated: bool = False
    silent: bool = False
    clipped: bool = False


def _audio_decode_error(label: str, detail: str = "") -> MMDemoError:
    extra = f" ({detail})" if detail else ""
    return MMDemoError("audio_unreadable", f"Audio {label!r} is not a readable audio file ({_AUDIO_KINDS} ...){extra}. "
                                           "Check that the file is complete and in one of these formats, then upload it again.")


def _int_to_float(arr: np.ndarray) -> np.ndarray:
    info = np.iinfo(arr.dtype)
    if info.min == 0:  # unsigned PCM is offset-binary: silence sits mid-range
        mid = (int(info.max) + 1) / 2
        return ((arr.astype(np.float64) - mid) / mid).astype(np.float32)
    return (arr.astype(np.float64) / (float(info.max) + 1.0)).astype(np.float32)


def _read_soundfile(data: bytes | Path, label: str, max_seconds: float) -> tuple[np.ndarray, int, bool]:
    """Returns (frames x channels float32, sample rate, truncated). Raises LibsndfileError untouched."""
    import soundfile as sf

    with sf.SoundFile(str(data) if isinstance(data, Path) else io.BytesIO(data)) as f:
        sr = int(f.samplerate)
        _check_sample_rate(sr, label)
        limit = int(round(max_seconds * sr))
        # Read one frame past the limit so a file exactly max_seconds long isn't flagged.
        frames = f.read(frames=limit + 1, dtype="float32", always_2d=True)
    truncated = frames.shape[0] > limit
    return frames[:limit], sr, truncated


def _read_audioread(data: bytes | Path, label: str, max_seconds: float) -> tuple[np.ndarray, int, bool]:
    """Fallback for formats libsndfile lacks (e.g. M4A through ffmpeg, when installed)."""
    import audioread

    if isinstance(data, Path):
        tmp_path, own_tmp = str(data), False
    else:  # audioread backends only take file names
        with tempfile.NamedTemporaryFile(suffix=Path(label).suffix or ".bin", delete=False) as tmp:
            tmp.write(data)
            tmp_path, own_tmp = tmp.name, True
    try:
        with audioread.audio_open(tmp_path) as f:
            sr, channels = int(f.samplerate), int(f.channels)
            _check_sample_rate(sr, label)
            limit = int(round(max_seconds * sr)) * max(channels, 1)
            chunks, total = [], 0
            for buf in f:
                chunk = np.frombuffer(buf, dtype="<i2")
                chunks.append(chunk)
                total += chunk.size
                if total > limit:
                    break
    finally:
        if own_tmp:
            os.unlink(tmp_path)
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    channels = max(channels, 1)
    pcm = pcm[: pcm.size - pcm.size % channels].reshape(-1, channels)
    frames = _int_to_float(pcm)
    limit_frames = int(round(max_seconds * sr))
    return frames[:limit_frames], sr, frames.shape[0] > limit_frames


def _check_sample_rate(sr: int, label: str) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise MMDemoError(
            "audio_sample_rate_unsupported",
            f"Audio {label!r} has a sample rate of {sr} Hz; supported rates are "
            f"{MIN_SAMPLE_RATE // 1000} kHz to {MAX_SAMPLE_RATE // 1000} kHz. Re-export it at e.g. 16 or 44.1 kHz."
        )


def _array_frames(arr: Any, label: str) -> np.ndarray:
    """A gradio-style array as frames x channels float32."""
    arr = np.asarray(arr)
    if np.iscomplexobj(arr):
        raise MMDemoError("audio_array_invalid", f"Audio {label!r} has complex samples. Pass real-valued audio.")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise MMDemoError("audio_array_invalid", f"Audio {label!r} is not a numeric array (dtype {arr.dtype}). "
                                                 "Pass (sample_rate, samples).")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        # Gradio gives samples x channels; channels-first arrays (librosa, torch) have
        # few rows and many columns, and no real recording has more than 16 channels.
        if arr.shape[0] <= 16 and arr.shape[1] > 16:
            arr = arr.T
    else:
        raise MMDemoError("audio_array_invalid", f"Audio {label!r} has array shape {arr.shape}; "
                                                 "expected (samples,) or (samples, channels).")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return _int_to_float(arr)
    return arr.astype(np.float32)


def load_audio(
    source: str | Path | bytes | tuple[int, np.ndarray],
    *,
    name: str | None = None,
    target_sr: int | Callable[[], int] | None = 16000,
    max_seconds: float = 30.0,
) -> AudioClip:
    """Decode an upload to mono float32 at ``target_sr`` (None keeps the file's rate).

    ``target_sr`` may be a function, asked only once the upload has decoded: callers pass
    ``lambda: audio.sample_rate`` of a model that loads on first use, so a broken upload
    is refused before any model loads (or downloads).

    At most ``max_seconds`` are kept; longer input is cut (``truncated=True``).
    """
    label = display_name(source, name, "uploaded audio")
    notices: list[str] = []

    if isinstance(source, tuple):
        if len(source) != 2:
            raise MMDemoError("audio_array_invalid", f"Audio {label!r} must be (sample_rate, samples); "
                                                     f"got a tuple of {len(source)} items.")
        sr_raw, arr = source
        if isinstance(sr_raw, np.ndarray) and not isinstance(arr, np.ndarray):
            sr_raw, arr = arr, sr_raw  # (samples, sr) is an easy mistake to forgive
        try:
            sr = int(sr_raw)
        except (TypeError, ValueError):
            raise MMDemoError("audio_sample_rate_invalid", f"Audio {label!r} has a sample rate of {sr_raw!r}; "
                                                           "it must be a whole number of Hz.") from None
        _check_sample_rate(sr, label)
        frames = _array_frames(arr, label)
        limit = int(round(max_seconds * sr))
        truncated = frames.shape[0] > limit
        frames = frames[:limit]
    elif isinstance(source, (str, Path)):
        # Decoded from disk, not slurped: only the first max_seconds are ever read.
        path = Path(source)
        if path.is_dir():
            raise MMDemoError("file_is_folder", f"Audio {label!r} is a folder, not a file ({path}). "
                                                "Check the path or upload it again.")
        if not path.is_file():
            raise MMDemoError("file_not_found", f"Audio {label!r} was not found ({path}). "
                                                "Check the path or upload it again.")
        if path.stat().st_size == 0:
            raise MMDemoError("file_empty", f"Audio {label!r} is empty (0 bytes). "
                                            "Upload the file again; the upload may have failed.")
        frames, sr, truncated = _decode_audio(path, label, max_seconds)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = read_source_bytes(source, label, "Audio", None)
        frames, sr, truncated = _decode_audio(data, label, max_seconds)
    else:
        raise MMDemoError(
            "audio_type_unsupported",
            f"Audio {label!r} has an unsupported type ({type(source).__name__}). "
            "Pass a file path, bytes or (sample_rate, numpy array)."
        )

    channels = int(frames.shape[1]) if frames.ndim == 2 else 1
    if frames.shape[0] == 0:
        raise MMDemoError("audio_empty", f"Audio {label!r} contains no samples. "
                                         "Record or upload a clip that is not empty.")

    wave = frames.mean(axis=1, dtype=np.float64).astype(np.float32) if channels > 1 else frames[:, 0].astype(np.float32)
    finite = np.isfinite(wave)
    if not finite.all():
        bad = int((~finite).sum())
        notices.append(Notice("audio_samples_not_finite", f"Audio {label!r} had {bad} invalid (NaN/infinite) "
                                                          "samples; they were replaced by silence.", subject=label))
        wave = np.where(finite, wave, np.float32(0.0)).astype(np.float32)

    peak = float(np.abs(wave).max())
    if peak > 1.0 + 1e-6:
        # Float audio outside [-1, 1] is usually unnormalised, not intentionally loud.
        notices.append(Notice("audio_rescaled", f"Audio {label!r} had samples beyond full scale (peak {peak:.2f}); "
                                                "it was scaled down to fit.", subject=label))
        wave = (wave / peak).astype(np.float32)
        peak = 1.0

    # Judge clipping on the original samples: resampling rings around flat tops.
    clipped = bool(np.mean(np.abs(wave) >= _CLIP_LEVEL) >= _CLIP_FRACTION) and peak >= _SILENCE_PEAK
    silent = peak < _SILENCE_PEAK
    if silent:
        notices.append(Notice("audio_silent", f"Audio {label!r} is silent (no sound above the noise floor); "
                                              "results will be meaningless.", subject=label))
    if clipped:
        notices.append(Notice("audio_clipped", f"Audio {label!r} is clipped (too loud when recorded); "
                                               "results may be less accurate.", subject=label))
    if truncated:
        notices.append(Notice("audio_too_long", f"Audio {label!r} is longer than {max_seconds:g} s; only the first "
                                                f"{max_seconds:g} s are used.", subject=label))

    out_sr = sr
    if callable(target_sr):
        target_sr = target_sr()
    if target_sr is not None and int(target_sr) != sr:
        import soxr

        out_sr = int(target_sr)
        wave = soxr.resample(wave, sr, out_sr).astype(np.float32, copy=False)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    return AudioClip(
        wave=wave,
        sample_rate=out_sr,
        duration=wave.shape[0] / out_sr,
        name=label,
        original_sample_rate=sr,
        channels=channels,
        notices=notices,
        truncated=truncated,
        silent=silent,
        clipped=clipped,
    )


# libsndfile's "format not recognised" and "unimplemented format": the only
# failures another decoder might do better on. Malformed files stay errors.
_SF_TRY_FALLBACK = {1, 18}


def _decode_audio(data: bytes | Path, label: str, max_seconds: float) -> tuple[np.ndarray, int, bool]:
    import soundfile as sf

    try:
        return _read_soundfile(data, label, max_seconds)
    except MMDemoError:
        raise
    except sf.LibsndfileError as exc:
        if exc.code not in _SF_TRY_FALLBACK:
            raise _audio_decode_error(label, exc.error_string) from None
        sf_detail = exc.error_string
    except Exception as exc:  # noqa: BLE001 - libsndfile wrappers raise assorted types on junk
        raise _audio_decode_error(label, f"{type(exc).__name__}: {exc}") from None
    try:
        return _read_audioread(data, label, max_seconds)
    except MMDemoError:
        raise
    except Exception:  # noqa: BLE001 - audioread backends raise anything, including NoBackendError
        raise _audio_decode_error(label, sf_detail) from None

