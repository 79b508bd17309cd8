"""Why it matched: where in an image a model matched a text, and when in a clip (and in
which frequency band) a sound matched it.

Images: the CLIP handle's ``saliency`` gives a map over its patch grid by one of two
methods (``chefer``: gradient-weighted attention, Chefer et al. 2021; ``tokens``:
patch-token similarity; see mmdemo/models/saliency.py). Here it is resampled over the
model's own view of the image (resized and cropped as its preprocessing does), each
token placed at the centre of its receptive field, scaled to [0, 1] and drawn.

Sounds: any audio handle, by occlusion. The window the text matched best is encoded
again with parts of its spectrogram silenced (time slices, frequency bands, and their
cells); how much the cosine with the text drops says how much that part mattered. It
needs nothing but ``encode_waves``, so the tiny encoder and CLAP get the same map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mmdemo.errors import MMDemoError
from mmdemo.tasks.domain_notices import clip_notice, image_tokens_notice
from mmdemo.tasks.image.inputs import load, read_query

# What the UI offers, in order: the first is the default.
IMAGE_METHODS = {"chefer": "gradient-weighted attention (Chefer et al. 2021)",
                 "tokens": "patch-token similarity"}
OVERLAY_PIXELS = 320  # side of the drawn map
MAX_CONTRAST = 200  # other texts the gradient method explains against
TIME_SLICES = 16
FREQ_BANDS = 8
# The time x band cells: the same bands, coarser in time (each cell is one more encode).
GRID_SLICES, GRID_BANDS = 8, FREQ_BANDS
_N_FFT, _HOP = 512, 128


# --------------------------------------------------------------------------- images


@dataclass
class ImageMatchMap:
    text: str
    method: str
    similarity: float  # cosine of the image and the text
    heat: np.ndarray  # [S, S] in [0, 1], over the model's view of the image
    peak: tuple[float, float]  # (x, y) where the map peaks, as fractions of the view
    view: Image.Image  # the image as the model saw it (resized, cropped)
    notices: list[str] = field(default_factory=list)


def heat_over_view(grid: np.ndarray, geometry: dict) -> np.ndarray:
    """A token-grid map [gh, gw] resampled bilinearly over the model's input pixels
    [size, size], each token at its receptive field's centre, scaled to [0, 1]."""
    grid = np.asarray(grid, np.float64)
    size, stride, offset = int(geometry["size"]), float(geometry["stride"]), float(geometry["offset"])
    centres = np.arange(size) + 0.5
    gy = np.clip((centres - offset) / stride, 0, grid.shape[0] - 1)
    gx = np.clip((centres - offset) / stride, 0, grid.shape[1] - 1)
    y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
    y1, x1 = np.minimum(y0 + 1, grid.shape[0] - 1), np.minimum(x0 + 1, grid.shape[1] - 1)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    heat = top * (1 - fy) + bottom * fy
    span = heat.max() - heat.min()
    return (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)


def peak_of(heat: np.ndarray) -> tuple[float, float]:
    """(x, y) of the map's maximum, as fractions of its sides (pixel centres)."""
    iy, ix = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return (ix + 0.5) / heat.shape[1], (iy + 0.5) / heat.shape[0]


def _check_method(method: str) -> str:
    method = (method or "chefer").strip().lower()
    if method not in IMAGE_METHODS:
        raise MMDemoError("map_method_unknown", f"Unknown map method {method!r}; pick one of: "
                                                f"{', '.join(IMAGE_METHODS)}.")
    return method


def _check_model(clip) -> None:
    if not callable(getattr(clip, "saliency", None)):
        raise MMDemoError("map_unsupported", "This model cannot show where it matched a text (it needs an "
                                             "open_clip ViT image tower).")


def image_maps(clip, images: Sequence[Image.Image], texts: Sequence[str], method: str = "chefer",
               contrast: Sequence[str] = ()) -> list[np.ndarray]:
    """Heat maps [S, S] in [0, 1] of where each image matched its text (batched)."""
    _check_model(clip)
    grids, geometry = clip.saliency(list(images), list(texts), _check_method(method), contrast=list(contrast))
    return [heat_over_view(g, geometry) for g in grids]


def explain_image_text(source: Any, text: str | None, clip, *, method: str = "chefer",
                       contrast: Sequence[str] | None = None, name: str | None = None) -> ImageMatchMap:
    """Where in the image the model matched ``text``. ``contrast``: other candidate
    texts (e.g. the rest of a ranking); the gradient method then shows where the image
    matched this text rather than those."""
    method = _check_method(method)
    _check_model(clip)
    if text is None or (isinstance(text, str) and not text.strip()):
        raise MMDemoError("text_empty", "Type the text to show on the image (e.g. 'a red star').")
    text, notices = read_query(text, clip)
    others = [t for t in dict.fromkeys(str(c).strip() for c in (contrast or ())) if t and t != text][:MAX_CONTRAST]
    loaded = load(source, name)
    notices = loaded.notices + notices
    heat = image_maps(clip, [loaded.image], [text], method, others if method == "chefer" else ())[0]
    # One image-tower pass for both the similarity and the familiarity check (it was two).
    pooled, tokens = clip.encode_image_tokens([loaded.image])
    similarity = float(np.asarray(pooled)[0] @ np.asarray(clip.encode_texts([text]))[0])
    notices += image_tokens_notice(clip, tokens)
    return ImageMatchMap(text, method, similarity, heat, peak_of(heat), clip.model_view(loaded.image), notices)


# A dark-to-bright ramp (black, purple, orange, yellow): readable over any image.
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


def colour_ramp(heat: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 RGB [H, W, 3]."""
    pos = np.clip(heat, 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)


def overlay(result: ImageMatchMap, pixels: int = OVERLAY_PIXELS, alpha: float = 0.55) -> Image.Image:
    """The model's view with the map blended over it and the peak ringed."""
    view = result.view.resize((pixels, pixels), Image.Resampling.BICUBIC)
    heat = Image.fromarray((result.heat * 255).astype(np.uint8)).resize((pixels, pixels), Image.Resampling.BILINEAR)
    colours = Image.fromarray(colour_ramp(np.asarray(heat, np.float64) / 255))
    out = Image.blend(view, colours, alpha)
    x, y = result.peak[0] * pixels, result.peak[1] * pixels
    r = max(6, pixels // 40)
    draw = ImageDraw.Draw(out)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=3)
    draw.ellipse([x - r - 2, y - r - 2, x + r + 2, y + r + 2], outline=(0, 0, 0), width=1)
    return out


# --------------------------------------------------------------------------- sounds


@dataclass
class AudioMatchMap:
    text: str
    similarity: float  # cosine of the best window and the text
    window: tuple[float, float]  # seconds of the clip the map covers (its best window)
    time_edges: np.ndarray  # [T + 1] seconds
    band_edges: np.ndarray  # [F + 1] Hz
    time_profile: np.ndarray  # [T] drop in cosine when that slice is silenced
    band_profile: np.ndarray  # [F] drop in cosine when that band is silenced
    grid: np.ndarray  # [GRID_BANDS, GRID_SLICES] drop when that cell is silenced
    grid_time_edges: np.ndarray
    grid_band_edges: np.ndarray
    notices: list[str] = field(default_factory=list)


def _mel_edges(sample_rate: int, n: int) -> np.ndarray:
    """``n`` bands equally wide on the mel scale, 0 Hz to Nyquist: as a listener (and a
    log-mel front end) divides the spectrum."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    return hz(np.linspace(0, mel(sample_rate / 2), n + 1))


def _silenced(spec: np.ndarray, cells: list[tuple[slice, slice]], length: int) -> list[np.ndarray]:
    from scipy.signal import istft

    waves = []
    for rows, cols in cells:
        masked = spec.copy()
        masked[rows, cols] = 0
        _, wave = istft(masked, nperseg=_N_FFT, noverlap=_N_FFT - _HOP)
        waves.append(np.asarray(wave[:length], np.float32))
    return waves


def _spans(edges: np.ndarray, positions: np.ndarray) -> list[slice]:
    idx = np.searchsorted(positions, edges)
    return [slice(int(a), max(int(b), int(a) + 1)) for a, b in zip(idx[:-1], idx[1:])]


def explain_audio_text(source: Any, text: str | None, audio, *, templates: str | Sequence[str] | None = None,
                       name: str | None = None) -> AudioMatchMap:
    """When (and in which band) the clip's best window matched ``text``, by occlusion.
    ``templates``: the prompt templates the text was scored with (as ``match_audio``
    takes them), so the map explains the same score."""
    from scipy.signal import stft

    from mmdemo.tasks.audio import MAX_CLIP_SECONDS, _load, embed_clip, encode_labels, parse_templates

    text = (text or "").strip() if isinstance(text, (str, type(None))) else str(text).strip()
    if not text:
        raise MMDemoError("text_empty", "Type the text to explain (e.g. 'a rising beep').")
    templates, _ = parse_templates(templates)
    clip = _load(source, name, audio, MAX_CLIP_SECONDS)
    windowed = embed_clip(audio, clip)
    text_emb = np.asarray(encode_labels(audio, [text], templates), np.float32)[0]
    sims = windowed.embeddings @ text_emb
    best = int(np.argmax(sims))
    start, end = windowed.bounds[best]
    wave = np.asarray(clip.wave[start:end], np.float32)
    wave = np.pad(wave, (0, max(0, _N_FFT - len(wave))))  # a clip shorter than one FFT frame: padded with silence
    sr = clip.sample_rate
    freqs, times, spec = stft(wave, nperseg=_N_FFT, noverlap=_N_FFT - _HOP)
    seconds = len(wave) / sr
    t_edges, f_edges = np.linspace(0, seconds, TIME_SLICES + 1), _mel_edges(sr, FREQ_BANDS)
    gt_edges, gf_edges = np.linspace(0, seconds, GRID_SLICES + 1), _mel_edges(sr, GRID_BANDS)
    t_pos, f_pos = times / sr, freqs * sr  # stft (fs=1) gives samples and cycles per sample
    every_f, every_t, nothing = slice(None), slice(None), slice(0, 0)
    # First the window itself, through the same round trip, as the baseline of every drop.
    cells = ([(nothing, nothing)] + [(every_f, t) for t in _spans(t_edges, t_pos)]
             + [(f, every_t) for f in _spans(f_edges, f_pos)]
             + [(f, t) for f in _spans(gf_edges, f_pos) for t in _spans(gt_edges, t_pos)])
    embs = np.asarray(audio.encode_waves(_silenced(spec, cells, len(wave))), np.float32) @ text_emb
    drops = embs[0] - embs[1:]
    notices = list(clip.notices) + clip_notice(audio, clip.wave)
    return AudioMatchMap(
        text, float(sims[best]), (start / sr, end / sr), t_edges + start / sr, f_edges,
        drops[:TIME_SLICES], drops[TIME_SLICES:TIME_SLICES + FREQ_BANDS],
        drops[TIME_SLICES + FREQ_BANDS:].reshape(GRID_BANDS, GRID_SLICES), gt_edges + start / sr, gf_edges, notices)
