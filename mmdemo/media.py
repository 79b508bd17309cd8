"""Safe loading and validation of what users upload: images, audio, text lists, zips.

Everything here treats its input as hostile: a bad upload must end in an
``MMDemoError`` whose message names the file and says what to do, never in a
crash, a hang or a server that runs out of memory. Things that are worth
telling the user but not worth refusing (an animated GIF, clipped audio, a
duplicate label) come back as ``notices`` for the UI to show as warnings.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from mmdemo.errors import MMDemoError

__all__ = [
    "IMAGE_SUFFIXES",
    "AUDIO_SUFFIXES",
    "LoadedImage",
    "AudioClip",
    "load_image",
    "load_audio",
    "parse_text_lines",
    "safe_extract_zip",
    "collect_files",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a"})

# Only formats we advertise: Pillow can also open EPS (which runs Ghostscript)
# and a long tail of rarely-audited decoders, none of which a demo needs.
_IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
_IMAGE_KINDS = "PNG, JPEG, GIF, WebP, BMP, TIFF"
_AUDIO_KINDS = "WAV, FLAC, OGG, MP3"

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
_SILENCE_PEAK = 1e-4
_CLIP_LEVEL = 0.999
_CLIP_FRACTION = 0.001


# --------------------------------------------------------------------------- images


@dataclass
class LoadedImage:
    """An upload decoded to 8-bit RGB, upright, ready for a model.

    ``original_mode``/``original_size`` describe the pixel grid as stored in the
    file (before the EXIF orientation fix), for display and debugging.
    """

    image: Image.Image
    name: str
    notices: list[str] = field(default_factory=list)
    original_mode: str = "RGB"
    original_size: tuple[int, int] = (0, 0)


def _display_name(source: Any, name: str | None, default: str) -> str:
    if name:
        return str(name)
    if isinstance(source, (str, Path)):
        return Path(source).name or str(source)
    return default


def _read_source_bytes(source: str | Path | bytes, label: str, kind: str, max_bytes: int | None) -> bytes:
    """Read a path or bytes with the size checks done before anything is decoded."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.exists():
            raise MMDemoError(f"{kind} file {label!r} was not found ({path}). Check the path or upload it again.")
        if not path.is_file():
            raise MMDemoError(f"{kind} {label!r} is a folder, not a file ({path}). Pick a single {kind.lower()} file.")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise MMDemoError(
                f"{kind} {label!r} is too large ({_fmt_bytes(size)}; the limit is {_fmt_bytes(max_bytes)}). "
                "Upload a smaller file."
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MMDemoError(f"{kind} {label!r} could not be read ({exc.strerror or exc}). Check the file's permissions.") from None
    if not data:
        raise MMDemoError(f"{kind} {label!r} is empty (0 bytes). Upload the file again; the upload may have failed.")
    if max_bytes is not None and len(data) > max_bytes:
        raise MMDemoError(
            f"{kind} {label!r} is too large ({_fmt_bytes(len(data))}; the limit is {_fmt_bytes(max_bytes)}). "
            "Upload a smaller file."
        )
    return data


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _too_many_pixels(label: str, size: tuple[int, int], max_pixels: int) -> MMDemoError:
    w, h = size
    return MMDemoError(
        f"Image {label!r} is too large ({w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
        f"{max_pixels / 1e6:g} megapixels). Resize it to a smaller resolution and upload it again."
    )


def _stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_uint8(arr: np.ndarray, notices: list[str], label: str) -> np.ndarray:
    """Map any numeric pixel array to 0..255 using the range its dtype implies.

    Plain casting or PIL's own I->L conversion clips, which turns a typical
    16-bit photo (values in the thousands) into a white sheet.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            notices.append(f"Image {label!r} has NaN/infinite pixel values; they were set to black.")
            arr = np.where(finite, arr, 0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.round(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.round(arr).astype(np.uint8)
        notices.append(f"Image {label!r} has values outside 0..1; its contrast was stretched to fit 8 bits.")
        return _stretch_to_uint8(arr)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255 and arr.dtype.itemsize == 1:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            if hi <= 255 and arr.dtype != np.uint16:
                return arr.astype(np.uint8)
            # Full 16-bit scale keeps dark images dark; that is what the file means.
            return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        notices.append(f"Image {label!r} has pixel values outside 0..65535; its contrast was stretched to fit 8 bits.")
        return _stretch_to_uint8(arr)
    raise MMDemoError(f"Image {label!r} has pixels of type {arr.dtype}, which is not an image. Pass numbers (uint8 or float).")


def _array_to_pil(arr: np.ndarray, label: str, notices: list[str], max_pixels: int) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise MMDemoError(f"Image {label!r} is not a numeric array (dtype {arr.dtype}). Pass an HxW or HxWxC array of numbers.")
    if np.iscomplexobj(arr):
        raise MMDemoError(f"Image {label!r} has complex values. Pass real-valued pixels.")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        # Channels-first (CHW) is what torch code produces; accept it quietly.
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise MMDemoError(
            f"Image {label!r} has array shape {arr.shape}; expected HxW (gray) or HxWxC with 1-4 channels."
        )
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise MMDemoError(f"Image {label!r} is empty (shape {arr.shape}). Pass an image with at least one pixel.")
    if h * w > max_pixels:
        raise _too_many_pixels(label, (w, h), max_pixels)
    # uint8 HxW / HxWx2 / HxWx3 / HxWx4 map to L / LA / RGB / RGBA.
    return Image.fromarray(np.ascontiguousarray(_to_uint8(arr, notices, label)))


def _pil_high_depth_to_8bit(im: Image.Image, label: str, notices: list[str]) -> Image.Image:
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        # 16-bit data is unsigned however Pillow labels it.
        arr = arr.astype(np.uint16, copy=False)
    return Image.fromarray(np.ascontiguousarray(_to_uint8(arr, notices, label)))


def _pil_to_rgb(im: Image.Image, label: str, notices: list[str]) -> Image.Image:
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        im = _pil_high_depth_to_8bit(im, label, notices)
        mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    try:
        if has_alpha:
            rgba = im.convert("RGBA")
            # White, not black: transparent logos and icons are drawn for light pages.
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise MMDemoError(
            f"Image {label!r} uses the {mode} color mode, which can't be converted to RGB ({exc}). "
            "Save it as an RGB PNG or JPEG and upload it again."
        ) from None


def _decode_error(label: str, detail: str = "") -> MMDemoError:
    extra = f" ({detail})" if detail else ""
    return MMDemoError(
        f"Image {label!r} is not a readable image ({_IMAGE_KINDS}){extra}. "
        "Check that the file is a complete image and upload it again."
    )


def load_image(
    source: str | Path | bytes | Image.Image | np.ndarray,
    *,
    name: str | None = None,
    max_pixels: int = 40_000_000,
    max_bytes: int | None = None,
) -> LoadedImage:
    """Decode an upload to an upright 8-bit RGB image, or raise MMDemoError saying why not."""
    label = _display_name(source, name, "uploaded image")
    notices: list[str] = []

    if isinstance(source, np.ndarray):
        shape = source.shape
        im = _array_to_pil(source, label, notices, max_pixels)
        original_mode = f"array {source.dtype} {'x'.join(map(str, shape))}"
        return LoadedImage(_pil_to_rgb(im, label, notices), label, notices, original_mode, im.size)

    if isinstance(source, Image.Image):
        if source.width * source.height > max_pixels:
            raise _too_many_pixels(label, source.size, max_pixels)
        if source.width == 0 or source.height == 0:
            raise MMDemoError(f"Image {label!r} is empty (0 pixels). Pass an image with at least one pixel.")
        return _finish_pil(source, label, notices, max_pixels)

    if not isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        raise MMDemoError(
            f"Image {label!r} has an unsupported type ({type(source).__name__}). "
            "Pass a file path, bytes, a PIL image or a numpy array."
        )
    data = _read_source_bytes(source, label, "Image", max_bytes)
    try:
        im = Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise MMDemoError(
            f"Image {label!r} is too large (its header claims more pixels than any real photo; "
            f"the limit is {max_pixels / 1e6:g} megapixels). Resize it and upload it again."
        ) from None
    except Image.UnidentifiedImageError:
        raise _decode_error(label) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything (SyntaxError, struct.error...) on junk
        raise _decode_error(label, f"{type(exc).__name__}: {exc}") from None
    with im:
        return _finish_pil(im, label, notices, max_pixels)


def _finish_pil(im: Image.Image, label: str, notices: list[str], max_pixels: int) -> LoadedImage:
    original_mode, original_size = im.mode, im.size
    # Header-declared size, checked before a single pixel is decoded.
    if original_size[0] * original_size[1] > max_pixels:
        raise _too_many_pixels(label, original_size, max_pixels)
    if getattr(im, "is_animated", False):
        kind = "animated" if (im.format or "").upper() in ("GIF", "WEBP", "PNG") else "a multi-page file"
        notices.append(f"Image {label!r} is {kind}; using the first frame.")
        try:
            im.seek(0)
        except EOFError:  # pragma: no cover - frame 0 always exists once opened
            pass
    # Pillow's LOAD_TRUNCATED_IMAGES is process-wide and left alone: with its
    # default (False) a cut-off file fails in load() below and gets a clear message.
    try:
        im.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(label, original_size, max_pixels) from None
    except MemoryError:
        raise _too_many_pixels(label, original_size, max_pixels) from None
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as OSError, SyntaxError, ValueError...
        detail = str(exc)
        if "truncated" in detail or "broken data stream" in detail or isinstance(exc, EOFError):
            raise MMDemoError(
                f"Image {label!r} is not a readable image ({_IMAGE_KINDS}): the file is truncated or incomplete. "
                "Upload the complete file again."
            ) from None
        raise _decode_error(label, f"{type(exc).__name__}: {exc}") from None
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - broken EXIF must not cost the user the picture
        upright = im
        notices.append(f"Image {label!r} has unreadable orientation data; it is shown as stored.")
    if upright is None:  # pragma: no cover - only with in_place=True
        upright = im
    rgb = _pil_to_rgb(upright, label, notices)
    if rgb is im:
        rgb = im.copy()
    return LoadedImage(rgb, label, notices, original_mode, original_size)


# --------------------------------------------------------------------------- audio


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
    return MMDemoError(
        f"Audio {label!r} is not a readable audio file ({_AUDIO_KINDS} ...){extra}. "
        "Check that the file is complete and in one of these formats, then upload it again."
    )


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
            f"Audio {label!r} has a sample rate of {sr} Hz; supported rates are "
            f"{MIN_SAMPLE_RATE // 1000} kHz to {MAX_SAMPLE_RATE // 1000} kHz. Re-export it at e.g. 16 or 44.1 kHz."
        )


def _array_frames(arr: Any, label: str) -> np.ndarray:
    """A gradio-style array as frames x channels float32."""
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise MMDemoError(f"Audio {label!r} is not a numeric array (dtype {arr.dtype}). Pass (sample_rate, samples).")
    if np.iscomplexobj(arr):
        raise MMDemoError(f"Audio {label!r} has complex samples. Pass real-valued audio.")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        # Gradio gives samples x channels; channels-first arrays (librosa, torch) have
        # few rows and many columns, and no real recording has more than 16 channels.
        if arr.shape[0] <= 16 and arr.shape[1] > 16:
            arr = arr.T
    else:
        raise MMDemoError(f"Audio {label!r} has array shape {arr.shape}; expected (samples,) or (samples, channels).")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return _int_to_float(arr)
    return arr.astype(np.float32)


def load_audio(
    source: str | Path | bytes | tuple[int, np.ndarray],
    *,
    name: str | None = None,
    target_sr: int | None = 16000,
    max_seconds: float = 30.0,
) -> AudioClip:
    """Decode an upload to mono float32 at ``target_sr`` (None keeps the file's rate).

    At most ``max_seconds`` are kept; longer input is cut (``truncated=True``).
    """
    label = _display_name(source, name, "uploaded audio")
    notices: list[str] = []

    if isinstance(source, tuple):
        if len(source) != 2:
            raise MMDemoError(f"Audio {label!r} must be (sample_rate, samples); got a tuple of {len(source)} items.")
        sr_raw, arr = source
        if isinstance(sr_raw, np.ndarray) and not isinstance(arr, np.ndarray):
            sr_raw, arr = arr, sr_raw  # (samples, sr) is an easy mistake to forgive
        try:
            sr = int(sr_raw)
        except (TypeError, ValueError):
            raise MMDemoError(f"Audio {label!r} has a sample rate of {sr_raw!r}; it must be a whole number of Hz.") from None
        _check_sample_rate(sr, label)
        frames = _array_frames(arr, label)
        limit = int(round(max_seconds * sr))
        truncated = frames.shape[0] > limit
        frames = frames[:limit]
    elif isinstance(source, (str, Path)):
        # Decoded from disk, not slurped: only the first max_seconds are ever read.
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "was not found"
            raise MMDemoError(f"Audio {label!r} {what} ({path}). Check the path or upload it again.")
        if path.stat().st_size == 0:
            raise MMDemoError(f"Audio {label!r} is empty (0 bytes). Upload the file again; the upload may have failed.")
        frames, sr, truncated = _decode_audio(path, label, max_seconds)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = _read_source_bytes(source, label, "Audio", None)
        frames, sr, truncated = _decode_audio(data, label, max_seconds)
    else:
        raise MMDemoError(
            f"Audio {label!r} has an unsupported type ({type(source).__name__}). "
            "Pass a file path, bytes or (sample_rate, numpy array)."
        )

    channels = int(frames.shape[1]) if frames.ndim == 2 else 1
    if frames.shape[0] == 0:
        raise MMDemoError(f"Audio {label!r} contains no samples. Record or upload a clip that is not empty.")

    wave = frames.mean(axis=1, dtype=np.float64).astype(np.float32) if channels > 1 else frames[:, 0].astype(np.float32)
    finite = np.isfinite(wave)
    if not finite.all():
        bad = int((~finite).sum())
        notices.append(f"Audio {label!r} had {bad} invalid (NaN/infinite) samples; they were replaced by silence.")
        wave = np.where(finite, wave, np.float32(0.0)).astype(np.float32)

    peak = float(np.abs(wave).max())
    if peak > 1.0 + 1e-6:
        # Float audio outside [-1, 1] is usually unnormalised, not intentionally loud.
        notices.append(f"Audio {label!r} had samples beyond full scale (peak {peak:.2f}); it was scaled down to fit.")
        wave = (wave / peak).astype(np.float32)
        peak = 1.0

    # Judge clipping on the original samples: resampling rings around flat tops.
    clipped = bool(np.mean(np.abs(wave) >= _CLIP_LEVEL) >= _CLIP_FRACTION) and peak >= _SILENCE_PEAK
    silent = peak < _SILENCE_PEAK
    if silent:
        notices.append(f"Audio {label!r} is silent (no sound above the noise floor); results will be meaningless.")
    if clipped:
        notices.append(f"Audio {label!r} is clipped (too loud when recorded); results may be less accurate.")
    if truncated:
        notices.append(f"Audio {label!r} is longer than {max_seconds:g} s; only the first {max_seconds:g} s are used.")

    out_sr = sr
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


# --------------------------------------------------------------------------- text lists


def parse_text_lines(
    text: str | bytes | list[str] | None,
    *,
    what: str = "labels",
    max_items: int = 100,
    max_chars: int = 300,
) -> tuple[list[str], list[str]]:
    """One item per line (or list element): stripped, de-duplicated, bounded.

    Returns ``(items, notices)``; raises MMDemoError when nothing usable is left
    or there are more than ``max_items``.
    """
    notices: list[str] = []
    if text is None:
        raw_lines: list[str] = []
    else:
        pieces: Iterable[Any] = [text] if isinstance(text, (str, bytes, bytearray)) else text
        raw_lines = []
        for piece in pieces:
            if piece is None:
                continue
            if isinstance(piece, (bytes, bytearray)):
                try:
                    piece = bytes(piece).decode("utf-8")
                except UnicodeDecodeError:
                    piece = bytes(piece).decode("utf-8", errors="replace")
                    notices.append(f"Some {what} were not valid UTF-8 text; unreadable characters were replaced with \ufffd.")
            raw_lines.extend(str(piece).splitlines())

    items: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    n_truncated = 0
    for line in raw_lines:
        line = line.replace("\ufeff", "").replace("\x00", "").strip()
        if not line:
            continue
        if len(line) > max_chars:
            line = line[:max_chars].rstrip()
            n_truncated += 1
        if line in seen:
            duplicates.append(line)
            continue
        seen.add(line)
        items.append(line)

    if not items:
        raise MMDemoError(f"Enter at least one {_singular(what)} (one per line).")
    if len(items) > max_items:
        raise MMDemoError(f"Too many {what}: {len(items)} entered, at most {max_items} are allowed. Remove some and try again.")
    if n_truncated:
        notices.append(f"{n_truncated} of the {what} were longer than {max_chars} characters and were shortened.")
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        notices.append(f"Removed {len(duplicates)} duplicate {what}: {shown}.")
    return items, notices


def _singular(what: str) -> str:
    if what.endswith(("sses", "xes", "ches", "shes")):
        return what[:-2]
    return what[:-1] if what.endswith("s") and not what.endswith("ss") else what


# --------------------------------------------------------------------------- zips and file collections


def _zip_member_path(name: str) -> PurePosixPath | None:
    """The member's safe relative path, or None when it is one we skip silently."""
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts:
        return None
    if parts[0] == "__MACOSX" or any(p.startswith(".") and p != ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def _zip_entry_is_unsafe(name: str) -> bool:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        return True  # absolute POSIX path or a Windows drive letter
    return ".." in norm.split("/")


def safe_extract_zip(
    zip_path: str | Path,
    dest_dir: str | Path,
    *,
    max_files: int = 1000,
    max_total_bytes: int = 500 * 1024 * 1024,
    allowed_suffixes: Iterable[str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Extract a user's zip without letting it escape ``dest_dir`` or fill the disk.

    Returns ``(paths, notices)``: extracted files in sorted order, and warnings
    such as skipped files. Directories, ``__MACOSX/`` and dotfiles are skipped
    silently. Any unsafe entry rejects the whole archive before anything is
    written; a size overrun while streaming removes what was written.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    label = zip_path.name
    allowed = {s.lower() for s in allowed_suffixes} if allowed_suffixes is not None else None
    if not zip_path.is_file():
        raise MMDemoError(f"Zip file {label!r} was not found ({zip_path}). Upload it again.")
    if zip_path.stat().st_size == 0:
        raise MMDemoError(f"Zip file {label!r} is empty (0 bytes). Upload it again.")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise MMDemoError(f"{label!r} is not a valid zip file ({exc}). Re-create the archive and upload it again.") from None

    notices: list[str] = []
    with zf:
        # Reject before writing anything, so a bad archive leaves no half-extracted mess.
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for info in zf.infolist():
            if _zip_entry_is_unsafe(info.filename):
                raise MMDemoError(
                    f"Zip file {label!r} contains an unsafe path {info.filename!r} (absolute or with '..'). "
                    "Re-create the archive with relative paths only."
                )
            unix_mode = info.external_attr >> 16
            if unix_mode and stat.S_ISLNK(unix_mode):
                raise MMDemoError(
                    f"Zip file {label!r} contains a symbolic link {info.filename!r}. "
                    "Re-create the archive without links (store the real files)."
                )
            if info.is_dir():
                continue
            rel = _zip_member_path(info.filename)
            if rel is None:
                continue
            if allowed is not None and rel.suffix.lower() not in allowed:
                skipped.append(info.filename)
                continue
            if info.flag_bits & 0x1:
                raise MMDemoError(f"Zip file {label!r} is password-protected ({info.filename!r}). Upload an unencrypted zip.")
            key = rel.as_posix().lower()  # case-insensitive file systems would merge these anyway
            if key in seen:
                notices.append(f"Zip file {label!r} lists {info.filename!r} twice; kept the first copy.")
                continue
            seen.add(key)
            plan.append((info, rel))
            if len(plan) > max_files:
                raise MMDemoError(
                    f"Zip file {label!r} has too many files (more than {max_files}); at most {max_files} are allowed. "
                    "Split it into smaller archives."
                )
        declared = sum(info.file_size for info, _ in plan)
        if declared > max_total_bytes:
            raise MMDemoError(
                f"Zip file {label!r} is too large when extracted ({_fmt_bytes(declared)}; the limit is "
                f"{_fmt_bytes(max_total_bytes)}). Upload fewer or smaller files."
            )
        if skipped:
            kinds = ", ".join(sorted(allowed)) if allowed else ""
            shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
            notices.append(f"Skipped {len(skipped)} file(s) in {label!r} that are not {kinds}: {shown}.")

        dest_dir.mkdir(parents=True, exist_ok=True)
        dest_root = dest_dir.resolve()
        written: list[Path] = []
        total = 0
        try:
            for info, rel in plan:
                target = dest_root.joinpath(*rel.parts)
                # Belt and braces: the name checks above should make this impossible.
                if not target.resolve().is_relative_to(dest_root):
                    raise MMDemoError(f"Zip file {label!r} contains an unsafe path {info.filename!r}.")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    written.append(target)
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        total += len(chunk)
                        # Counted on real output: headers can lie about sizes.
                        if total > max_total_bytes:
                            raise MMDemoError(
                                f"Zip file {label!r} is too large when extracted (more than "
                                f"{_fmt_bytes(max_total_bytes)}). Upload fewer or smaller files."
                            )
                        dst.write(chunk)
        except MMDemoError:
            _remove_all(written)
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            _remove_all(written)
            raise MMDemoError(
                f"Zip file {label!r} is corrupt or uses an unsupported compression ({exc}). "
                "Re-create the archive (standard ZIP, deflate) and upload it again."
            ) from None
        except Exception:
            _remove_all(written)
            raise
    return sorted(written), notices


def _remove_all(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _as_path(item: Any) -> Path:
    """Accept what upload widgets hand over: paths, strings, dicts or file-like objects with a path."""
    if isinstance(item, (str, Path)):
        return Path(item)
    if isinstance(item, dict):
        for key in ("path", "name"):
            if item.get(key):
                return Path(item[key])
    for attr in ("path", "name"):
        value = getattr(item, attr, None)
        if isinstance(value, (str, Path)) and value:
            return Path(value)
    raise MMDemoError(f"Can't use {type(item).__name__} as a file; pass file paths or uploaded files.")


_MAX_SCANNED = 200_000


def collect_files(
    paths: Iterable[Any] | str | Path | None,
    *,
    suffixes: Iterable[str],
    max_files: int,
    what: str = "images",
    extract_dir: str | Path | None = None,
) -> tuple[list[Path], list[str]]:
    """Expand files, folders (recursively, sorted) and zips into a list of files.

    Zips are extracted with :func:`safe_extract_zip` into ``extract_dir`` (a new
    temporary folder when None; the caller owns it). Files with other suffixes
    are skipped with a notice. Returns ``(files, notices)``; raises MMDemoError
    when nothing matches or more than ``max_files`` would be returned.
    """
    wanted = {s.lower() for s in suffixes}
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    notices: list[str] = []
    out: list[Path] = []
    seen: set[Path] = set()
    skipped: list[str] = []

    def too_many() -> MMDemoError:
        return MMDemoError(f"Too many {what}: at most {max_files} are allowed. Select fewer files or split them up.")

    scanned = 0

    def add(p: Path) -> None:
        key = p.resolve()
        if key in seen:
            return
        seen.add(key)
        out.append(p)
        if len(out) > max_files:
            raise too_many()

    for item in paths:
        p = _as_path(item)
        if not p.exists():
            raise MMDemoError(f"{p.name or p!s} was not found ({p}). Check the path or upload it again.")
        if p.is_dir():
            for root, dirs, files in os.walk(p):  # os.walk doesn't follow symlinked folders: no loops
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
                scanned += len(files)
                if scanned > _MAX_SCANNED:
                    # Someone pointed us at a home folder or a drive: stop instead of crawling it.
                    raise MMDemoError(
                        f"Folder {p.name or p!s} holds too many files (more than {_MAX_SCANNED:,}) to search "
                        f"for {what}. Pick a smaller folder with at most {max_files} {what}."
                    )
                for fname in sorted(files):
                    if fname.startswith("."):
                        continue
                    f = Path(root) / fname
                    if f.suffix.lower() in wanted:
                        add(f)
                    elif f.suffix.lower() != ".zip":
                        skipped.append(str(f.relative_to(p)))
            continue
        if p.suffix.lower() == ".zip" and ".zip" not in wanted:
            if extract_dir is None:
                dest = Path(tempfile.mkdtemp(prefix="mmdemo-zip-"))
            else:
                dest = Path(extract_dir) / f"{len(seen)}-{p.stem}"
            try:
                extracted, zip_notices = safe_extract_zip(
                    p, dest, max_files=max_files - len(out), allowed_suffixes=wanted
                )
            except MMDemoError as exc:
                if extract_dir is None:
                    shutil.rmtree(dest, ignore_errors=True)
                if "too many files" in str(exc):
                    raise too_many() from None
                raise
            notices.extend(zip_notices)
            for f in extracted:
                add(f)
            continue
        if p.suffix.lower() in wanted:
            add(p)
        else:
            skipped.append(p.name)

    if skipped:
        shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        notices.append(f"Skipped {len(skipped)} file(s) that are not {what} ({', '.join(sorted(wanted))}): {shown}.")
    if not out:
        raise MMDemoError(f"No {what} found. Upload files ending in {', '.join(sorted(wanted))} (or a zip of them).")
    return out, notices
