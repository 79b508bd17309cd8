"""A second generator of the same world, written apart from scenes.py and sounds.py.

The tiny bundle trains on ``scenes.render_scene`` and ``sounds.render_sound`` only; this
module is never used in training. It draws the same *content* (which objects, in which
order, on which background; which sound events, how loud) with other code and other
choices everywhere the vocabulary leaves room (see :mod:`mmdemo.toyworld.meanings`):

- images: shapes as point sets in their own frame (a polygon test, a parametric heart,
  an annulus), rotated a little, supersampled 2x and tent-filtered (scenes.py: PIL
  polygons at 4x, box-filtered); object sizes drawn from the whole range of their size
  word and placed by its own rejection sampler; colours jittered within their name;
  ring widths, star points and cross arms varied; backgrounds of other periods,
  contrasts and dot sizes; a little sensor noise;
- sounds: band-limited square and sawtooth waves from harmonics with random phases,
  pitches over the whole band of their word, attack/release envelopes, peaks anywhere
  in their loudness band, pink and brown noise by other filters, decaying-sine clicks
  at rates around their word's, chords with staggered onsets, a short gap between
  events, and clips at 16-48 kHz (resampled by the project's loader like any upload).

If the model learned its vocabulary, it scores about the same here as on the first
generator; ``python -m mmdemo eval --json`` reports both.
"""

from __future__ import annotations

import math

import numpy as np

from mmdemo.toyworld import meanings, scenes, sounds

SUPERSAMPLE = 2
SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)


# ----------------------------------------------------------------------------- images


def _polygon_mask(x: np.ndarray, y: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule: which points (x, y) lie inside the closed polygon ``pts``."""
    inside = np.zeros(x.shape, bool)
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    return inside


def _regular(n: int, radius: float, inner: float | None = None) -> list[tuple[float, float]]:
    k = n * 2 if inner else n
    return [((inner if inner and i % 2 else radius) * math.sin(2 * math.pi * i / k),
             -(inner if inner and i % 2 else radius) * math.cos(2 * math.pi * i / k)) for i in range(k)]


def _heart(radius: float) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    hx = 16 * np.sin(t) ** 3
    hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    s = radius / 16.5
    return list(zip((hx * s).tolist(), (hy * s + radius * 0.1).tolist()))


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    """``shape`` of half-extent ``r`` in its own frame (u right, v down)."""
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "ring":
        inner = r * (1 - rng.uniform(*meanings.RING_WIDTH))
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= inner * inner)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= r * 0.86
    if shape == "diamond":
        return np.abs(u) / (r * rng.uniform(0.62, 0.78)) + np.abs(v) / r <= 1.0
    if shape == "cross":
        arm = r * rng.uniform(*meanings.CROSS_ARM)
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    if shape == "triangle":
        return _polygon_mask(u, v - r * 0.12, _regular(3, r * 1.08))
    if shape == "star":
        return _polygon_mask(u, v, _regular(5, r * 1.05, inner=r * 1.05 * rng.uniform(*meanings.STAR_INNER)))
    if shape == "heart":
        return _polygon_mask(u, v, _heart(r))
    raise ValueError(f"unknown shape {shape}")


def _place(rng: np.random.Generator, radii: list[float]) -> list[tuple[float, float]]:
    """Centres (fractions of the side) that keep objects inside the image, apart from each
    other, and far enough apart in x for left/right to be clear. Sizes stay as drawn;
    only when they cannot all fit (three large shapes) are they placed on a zigzag that
    keeps them inside, and moved apart as far as the image allows."""
    for _ in range(2000):
        pts: list[tuple[float, float, float]] = []
        for r in radii:
            reach = r * 1.15
            x, y = rng.uniform(reach + 0.01, 1 - reach - 0.01, size=2)
            if all(abs(x - px) >= 0.12 and math.hypot(x - px, y - py) >= reach + pr + 0.02 for px, py, pr in pts):
                pts.append((float(x), float(y), reach))
            else:
                break
        # Object k of the caption must be k-th from the left, with its own size.
        if len(pts) == len(radii) and all(a[0] < b[0] for a, b in zip(pts, pts[1:])):
            return [(x, y) for x, y, _ in pts]
    n, reach = len(radii), [r * 1.15 for r in radii]
    xs = np.linspace(reach[0] + 0.01, 1 - reach[-1] - 0.01, n)
    return [(float(x), float(min(max(0.72 if k % 2 == 0 else 0.28, reach[k] + 0.01), 1 - reach[k] - 0.01)))
            for k, x in enumerate(xs)]


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(*meanings.BACKGROUND_GREY)
    base = np.clip(grey + rng.uniform(-10, 10, size=3), 0, 255)
    contrast = rng.uniform(*meanings.PATTERN_CONTRAST) * rng.choice([-1.0, 1.0])
    alt = np.clip(base + contrast, 0, 255)
    period = rng.uniform(*meanings.PATTERN_PERIOD_PX) * size / 64
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    xx, yy = xx + rng.uniform(0, period), yy + rng.uniform(0, period)
    if kind == "striped":
        on = (xx % period) < period * rng.uniform(0.4, 0.6)
    elif kind == "dotted":
        rad = rng.uniform(*meanings.DOT_RADIUS_PX) * size / 64
        dx, dy = xx % period - period / 2, yy % period - period / 2
        on = dx * dx + dy * dy <= rad * rad
    elif kind == "checkered":
        on = ((xx // period) + (yy // period)) % 2 == 1
    else:
        on = np.zeros(xx.shape, bool)
    return np.where(on[..., None], alt, base)


def render_scene(scene: scenes.Scene, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3] of ``scene``'s content, drawn this module's way."""
    big = size * SUPERSAMPLE
    img = _background(scene.background, big, rng)
    radii = [rng.uniform(*meanings.SIZE_DIAMETER[o.size]) / 2 for o in scene.objects]
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float64) + 0.5
    for obj, r, (cx, cy) in zip(scene.objects, radii, _place(rng, radii)):
        a = math.radians(rng.uniform(-meanings.MAX_ROTATION_DEG, meanings.MAX_ROTATION_DEG))
        u0, v0 = xx - cx * big, yy - cy * big
        u, v = u0 * math.cos(a) + v0 * math.sin(a), -u0 * math.sin(a) + v0 * math.cos(a)
        mask = _shape_mask(obj.shape, u, v, r * big, rng)
        colour = np.clip(np.array(scenes.COLOURS[obj.colour], float)
                         + rng.uniform(-meanings.COLOUR_JITTER, meanings.COLOUR_JITTER, size=3), 0, 255)
        img[mask] = colour
    # 2x2 blocks, then a [1 2 1] tent: softer edges than the first generator's box filter.
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    img = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) / 4
    img = (img[:, :-2] + 2 * img[:, 1:-1] + img[:, 2:]) / 4
    img = img + rng.normal(0, rng.uniform(0, 3), size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- sounds


def _harmonics(f: float, t: np.ndarray, sr: int, odd_only: bool, rng: np.random.Generator) -> np.ndarray:
    """A band-limited square (odd harmonics, 1/k) or sawtooth (all, 1/k) wave: one period
    summed into a table, then read at the tone's phase (linear interpolation)."""
    ks = np.arange(1, int(sr / 2 * 0.9 / f) + 1)
    ks = ks[ks % 2 == 1] if odd_only else ks
    grid = np.arange(4096) / 4096
    table = (np.sin(2 * np.pi * np.outer(grid, ks) + rng.uniform(0, 0.2, size=len(ks))) / ks).sum(axis=1)
    return np.interp((f * t) % 1.0 * 4096, np.arange(4097), np.append(table, table[0]))


def _coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import lfilter

    white = rng.standard_normal(n)
    if colour == "white":
        return white
    if colour == "brown":  # leaky integration of white noise: -6 dB per octave
        return lfilter([1.0], [1.0, -0.995], white)
    # pink, -3 dB per octave: Paul Kellet's bank of one-pole filters
    poles = (0.99886, 0.99332, 0.96900, 0.86650, 0.55000, -0.7616)
    gains = (0.0555179, 0.0750759, 0.1538520, 0.3104856, 0.5329522, -0.0168980)
    out = sum(lfilter([g], [1.0, -p], white) for p, g in zip(poles, gains))
    return out + 0.5362 * white + 0.115926 * np.concatenate([[0.0], white[:-1]])


def _event(e: sounds.SoundEvent, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(e.seconds * sr)
    t = np.arange(n) / sr
    if e.kind == "tone":
        pitch, wave = e.variant.split()
        f = rng.uniform(*meanings.pitch_band(pitch, wave))
        if wave == "sine":
            x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        else:
            x = _harmonics(f, t, sr, wave == "square", rng)
    elif e.kind == "chirp":
        lo, hi = rng.uniform(*meanings.CHIRP_LOW_HZ), rng.uniform(*meanings.CHIRP_HIGH_HZ)
        f0, f1 = (lo, hi) if e.variant == "rising" else (hi, lo)
        freq = f0 * (f1 / f0) ** (t / e.seconds)
        x = np.sin(2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi))
    elif e.kind == "noise":
        x = _coloured_noise(n, e.variant, rng)
    elif e.kind == "clicks":
        rate = rng.uniform(*meanings.CLICK_RATE_HZ[e.variant])
        x = np.zeros(n)
        ring = int(rng.uniform(0.002, 0.006) * sr)
        click = np.sin(2 * np.pi * rng.uniform(1500, 3000) * np.arange(ring) / sr) * np.exp(-np.arange(ring) / (ring / 4))
        for start in (np.arange(rng.uniform(0, 1 / rate), e.seconds, 1 / rate) * sr).astype(int):
            seg = x[start:start + ring]
            seg += click[: len(seg)]
    elif e.kind == "chord":
        root = rng.uniform(*meanings.CHORD_ROOT_HZ)
        third = 2 ** ((4 if e.variant == "major" else 3) / 12)
        x = np.zeros(n)
        for ratio in (1.0, third, 2 ** (7 / 12)):
            start = int(rng.uniform(0, 0.03) * sr)
            x[start:] += np.sin(2 * np.pi * root * ratio * t[: n - start] + rng.uniform(0, 2 * np.pi))
    else:
        raise ValueError(f"unknown sound kind {e.kind}")
    x = x / (np.max(np.abs(x)) + 1e-9)
    attack, release = int(rng.uniform(0.005, 0.05) * sr), int(rng.uniform(0.02, 0.2) * sr)
    attack, release = min(attack, n // 4), min(release, n // 4)
    if e.kind != "clicks":
        x[:attack] *= np.linspace(0, 1, attack) ** 2
        x[n - release:] *= np.linspace(1, 0, release) ** 2
    return x


def render_sound(spec: sounds.SoundSpec, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(sample rate, float32 mono) of ``spec``'s events and loudness, this module's way."""
    sr = int(rng.choice(SAMPLE_RATES))
    parts = []
    for i, e in enumerate(spec.events):
        if i:
            parts.append(np.zeros(int(rng.uniform(0.0, 0.15) * sr)))
        parts.append(_event(e, sr, rng))
    x = np.concatenate(parts)
    peak_db = rng.uniform(*meanings.PEAK_DBFS["loud" if spec.loud else "quiet"])
    return sr, (x / (np.max(np.abs(x)) + 1e-9) * 10 ** (peak_db / 20)).astype(np.float32)
