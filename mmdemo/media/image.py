"""Images users upload, decoded to upright 8-bit RGB or refused with a reason.

Paths, bytes, PIL images and numpy arrays (gray, RGB(A), channels-first, 16-bit,
float) all arrive at one ``LoadedImage``; what is odd but usable (an animated GIF,
stretched contrast, broken orientation data) comes back as a notice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mmdemo.errors import MMDemoError, Notice
from mmdemo.media.files import display_name, read_source_bytes

__all__ = ["IMAGE_SUFFIXES", "MAX_DECODED_SIDE", "LoadedImage", "load_image"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})

# Only formats we advertise: Pillow can also open EPS (which runs Ghostscript)
# and a long tail of rarely-audited decoders, none of which a demo needs.
_IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
_IMAGE_KINDS = "PNG, JPEG, GIF, WebP, BMP, TIFF"

# Longest side an upload is kept at once decoded. Every consumer needs far less: model
# inputs are 224-448 px (CLIP/CoCa, real or tiny), result thumbnails 384 px, and the
# browser shows the uploaded file itself, never this decode. 2048 px keeps headroom for
# a larger model input or a crop at 4x, while a 38 MP photo is held as at most 4 MP
# (12 MB of RGB instead of 115 MB); JPEGs are decoded straight to about that size
# (DCT scaling via ``Image.draft``), so their full resolution is never in memory.
MAX_DECODED_SIDE = 2048


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


def _too_many_pixels(label: str, size: tuple[int, int], max_pixels: int) -> MMDemoError:
    w, h = size
    return MMDemoError(
        "image_too_many_pixels",
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
            notices.append(Notice("image_pixels_not_finite", f"Image {label!r} has NaN/infinite pixel values; "
                                                             "they were set to black.", subject=label))
            arr = np.where(finite, arr, 0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.round(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            return np.round(arr).astype(np.uint8)
        notices.append(Notice("image_contrast_stretched", f"Image {label!r} has values outside 0..1; its contrast "
                                                          "was stretched to fit 8 bits.", subject=label))
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
        notices.append(Notice("image_contrast_stretched", f"Image {label!r} has pixel values outside 0..65535; its "
                                                          "contrast was stretched to fit 8 bits.", subject=label))
        return _stretch_to_uint8(arr)
    raise MMDemoError("image_array_invalid", f"Image {label!r} has pixels of type {arr.dtype}, which is not an image. "
                                             "Pass numbers (uint8 or float).")


def _array_to_pil(arr: np.ndarray, label: str, notices: list[str], max_pixels: int) -> Image.Image:
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise MMDemoError("image_array_invalid", f"Image {label!r} is not a numeric array (dtype {arr.dtype}). "
                                                 "Pass an HxW or HxWxC array of numbers.")
    if np.iscomplexobj(arr):
        raise MMDemoError("image_array_invalid", f"Image {label!r} has complex values. Pass real-valued pixels.")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        # Channels-first (CHW) is what torch code produces; accept it quietly.
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise MMDemoError(
            "image_array_invalid",
            f"Image {label!r} has array shape {arr.shape}; expected HxW (gray) or HxWxC with 1-4 channels."
        )
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise MMDemoError("image_empty", f"Image {label!r} is empty (shape {arr.shape}). "
                                         "Pass an image with at least one pixel.")
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
            "image_mode_unsupported",
            f"Image {label!r} uses the {mode} color mode, which can't be converted to RGB ({exc}). "
            "Save it as an RGB PNG or JPEG and upload it again."
        ) from None


def _decode_error(label: str, detail: str = "") -> MMDemoError:
    extra = f" ({detail})" if detail else ""
    return MMDemoError("image_unreadable", f"Image {label!r} is not a readable image ({_IMAGE_KINDS}){extra}. "
                                           "Check that the file is a complete image and upload it again.")


def load_image(
    source: str | Path | bytes | Image.Image | np.ndarray,
    *,
    name: str | None = None,
    max_pixels: int = 40_000_000,
    max_bytes: int | None = None,
    max_side: int | None = MAX_DECODED_SIDE,
) -> LoadedImage:
    """Decode an upload to an upright 8-bit RGB image, or raise MMDemoError saying why not.

    ``max_pixels`` limits the image as stored; the result is scaled down (aspect kept) to
    at most ``max_side`` pixels on its longest side (None: full resolution)."""
    label = display_name(source, name, "uploaded image")
    notices: list[str] = []

    if isinstance(source, np.ndarray):
        shape = source.shape
        im = _array_to_pil(source, label, notices, max_pixels)
        original_mode = f"array {source.dtype} {'x'.join(map(str, shape))}"
        rgb = _fit(_pil_to_rgb(im, label, notices), max_side)
        return LoadedImage(rgb, label, notices, original_mode, im.size)

    if isinstance(source, Image.Image):
        if source.width * source.height > max_pixels:
            raise _too_many_pixels(label, source.size, max_pixels)
        if source.width == 0 or source.height == 0:
            raise MMDemoError("image_empty", f"Image {label!r} is empty (0 pixels). "
                                             "Pass an image with at least one pixel.")
        return _finish_pil(source, label, notices, max_pixels, max_side, opened_here=False)

    if not isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        raise MMDemoError(
            "image_type_unsupported",
            f"Image {label!r} has an unsupported type ({type(source).__name__}). "
            "Pass a file path, bytes, a PIL image or a numpy array."
        )
    data = read_source_bytes(source, label, "Image", max_bytes)
    try:
        im = Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise MMDemoError(
            "image_too_many_pixels",
            f"Image {label!r} is too large (its header claims more pixels than any real photo; "
            f"the limit is {max_pixels / 1e6:g} megapixels). Resize it and upload it again."
        ) from None
    except Image.UnidentifiedImageError:
        raise _decode_error(label) from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything (SyntaxError, struct.error...) on junk
        raise _decode_error(label, f"{type(exc).__name__}: {exc}") from None
    with im:
        return _finish_pil(im, label, notices, max_pixels, max_side, opened_here=True)


def _fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _fit(im: Image.Image, max_side: int | None) -> Image.Image:
    """``im`` scaled down to ``max_side`` on its longest side; as is when it fits.

    ``reducing_gap`` first shrinks by an integer factor (box filter, cheap) to within 3x
    of the target, then resamples with Lanczos: as sharp as a direct Lanczos resize."""
    if max_side is None or max(im.size) <= max_side:
        return im
    return im.resize(_fit_size(im.size, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)


# Modes that resize filters correctly as they are (alpha premultiplied by Pillow):
# these are shrunk before the RGB conversion, so the conversion works on the small copy.
_RESIZABLE_MODES = ("RGB", "RGBA", "L", "LA")


def _finish_pil(im: Image.Image, label: str, notices: list[str], max_pixels: int,
                max_side: int | None, *, opened_here: bool) -> LoadedImage:
    original_mode, original_size = im.mode, im.size
    # Header-declared size, checked before a single pixel is decoded.
    if original_size[0] * original_size[1] > max_pixels:
        raise _too_many_pixels(label, original_size, max_pixels)
    if opened_here and max_side is not None and max(original_size) > max_side:
        # JPEG only (a no-op elsewhere): decode at 1/2, 1/4 or 1/8 scale, still at least
        # the target size, instead of decoding every pixel and throwing most away.
        im.draft(None, _fit_size(original_size, max_side))
    if getattr(im, "is_animated", False):
        kind = "animated" if (im.format or "").upper() in ("GIF", "WEBP", "PNG") else "a multi-page file"
        notices.append(Notice("image_animated", f"Image {label!r} is {kind}; using the first frame.", subject=label))
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
                "image_truncated",
                f"Image {label!r} is not a readable image ({_IMAGE_KINDS}): the file is truncated or incomplete. "
                "Upload the complete file again."
            ) from None
        raise _decode_error(label, f"{type(exc).__name__}: {exc}") from None
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - broken EXIF must not cost the user the picture
        upright = im
        notices.append(Notice("image_orientation_unreadable", f"Image {label!r} has unreadable orientation data; "
                                                              "it is shown as stored.", subject=label))
    if upright is None:  # pragma: no cover - only with in_place=True
        upright = im
    if upright.mode in _RESIZABLE_MODES:
        upright = _fit(upright, max_side)
    rgb = _fit(_pil_to_rgb(upright, label, notices), max_side)
    if rgb is im:
        rgb = im.copy()
    return LoadedImage(rgb, label, notices, original_mode, original_size)

