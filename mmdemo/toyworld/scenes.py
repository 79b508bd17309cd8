"""Generated scenes: 1-3 coloured shapes on a patterned background, with captions.

Seeded and fast (numpy + PIL). Some colour+shape pairs never appear in training
scenes (``HELD_OUT``) so evaluation can measure compositional generalisation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "heart")
COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (245, 215, 20),
    "purple": (140, 40, 180), "orange": (250, 130, 10), "white": (250, 250, 250), "black": (15, 15, 15),
}
SIZES = ("small", "large")
BACKGROUNDS = ("plain", "striped", "dotted", "checkered")
# One pair per colour/shape "diagonal" so every colour and every shape still appears
# in training with other partners.
HELD_OUT = frozenset({("red", "star"), ("green", "heart"), ("blue", "triangle"),
                      ("yellow", "ring"), ("purple", "square"), ("orange", "cross")})

_SIZE_FRAC = {"small": 0.22, "large": 0.40}  # of the image side
_SYN_SIZE = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the image side
    y: float


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    tint: int = 0  # background grey jitter, so backgrounds aren't one exact colour


def _pairs(split: str) -> list[tuple[str, str]]:
    allp = [(c, s) for c in COLOURS for s in SHAPES]
    if split == "train":
        return [p for p in allp if p not in HELD_OUT]
    return allp


def sample_scene(rng: np.random.Generator, n_objects: int | None = None, split: str = "train",
                 required: list[tuple[str, str]] | None = None,
                 forbid: set[tuple[str, str]] | None = None) -> Scene:
    """A random scene. ``split``: "train" avoids HELD_OUT pairs, "heldout" has at least
    one, "any" anything. ``required`` pairs are included; ``forbid`` pairs excluded."""
    n = int(n_objects or rng.integers(1, 4))
    required = list(required or [])
    n = max(n, len(required))
    forbid = set(forbid or ())
    pool = [p for p in _pairs(split) if p not in forbid and p not in required]
    if split == "heldout" and not any(p in HELD_OUT for p in required):
        choices = [p for p in HELD_OUT if p not in forbid]
        required.append(choices[rng.integers(len(choices))])
        pool = [p for p in pool if p not in required]
    n = max(n, len(required))
    extra = [pool[i] for i in rng.choice(len(pool), size=n - len(required), replace=False)]
    pairs = required + extra
    sizes = [SIZES[rng.integers(2)] for _ in pairs]
    # Left-to-right slots so objects never overlap and the order words are well defined.
    slots = np.sort(rng.permutation(3)[:n]) if n < 3 else np.arange(3)
    order = rng.permutation(n)
    objs = []
    for k, (pair, size) in enumerate(zip(pairs, sizes)):
        slot = slots[order[k]]
        half = _SIZE_FRAC[size] / 2
        lo, hi = slot / 3 + half * 0.6, (slot + 1) / 3 - half * 0.6
        x = float(rng.uniform(min(lo, hi), max(lo, hi))) if n > 1 else float(rng.uniform(0.3, 0.7))
        y = float(rng.uniform(0.25 + half * 0.3, 0.75 - half * 0.3))
        objs.append(SceneObject(pair[1], pair[0], size, x, y))
    objs.sort(key=lambda o: o.x)
    return Scene(tuple(objs), BACKGROUNDS[rng.integers(len(BACKGROUNDS))], int(rng.integers(-12, 13)))


def _background(scene: Scene, size: int) -> Image.Image:
    base = 150 + scene.tint
    img = Image.new("RGB", (size, size), (base, base, base))
    d = ImageDraw.Draw(img)
    alt = (base + 40, base + 40, base + 40)
    step = max(4, size // 8)
    if scene.background == "striped":
        for i in range(0, size, step):
            d.rectangle([i, 0, i + step // 2 - 1, size], fill=alt)
    elif scene.background == "dotted":
        r = max(1, step // 5)
        for i in range(step // 2, size, step):
            for j in range(step // 2, size, step):
                d.ellipse([i - r, j - r, i + r, j + r], fill=alt)
    elif scene.background == "checkered":
        for i in range(0, size, step):
            for j in range(0, size, step):
                if (i // step + j // step) % 2:
                    d.rectangle([i, j, i + step - 1, j + step - 1], fill=alt)
    return img


def _poly(cx, cy, r, n, start=-math.pi / 2, inner=None):
    pts = []
    for k in range(n * (2 if inner else 1)):
        a = start + k * math.pi * 2 / (n * (2 if inner else 1))
        rr = inner if (inner and k % 2) else r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _draw(d: ImageDraw.ImageDraw, o: SceneObject, size: int) -> None:
    cx, cy, r = o.x * size, o.y * size, _SIZE_FRAC[o.size] * size / 2
    fill = COLOURS[o.colour]
    if o.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif o.shape == "square":
        s = r * 0.85
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif o.shape == "triangle":
        d.polygon(_poly(cx, cy + r * 0.15, r * 1.1, 3), fill=fill)
    elif o.shape == "star":
        d.polygon(_poly(cx, cy, r * 1.1, 5, inner=r * 0.45), fill=fill)
    elif o.shape == "cross":
        w = r * 0.35
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif o.shape == "diamond":
        d.polygon([(cx, cy - r * 1.1), (cx + r * 0.75, cy), (cx, cy + r * 1.1), (cx - r * 0.75, cy)], fill=fill)
    elif o.shape == "ring":
        w = max(2.0, r * 0.4)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=int(round(w)))
    elif o.shape == "heart":
        q = r * 0.55
        d.ellipse([cx - r, cy - r * 0.75, cx - r + 2 * q, cy - r * 0.75 + 2 * q], fill=fill)
        d.ellipse([cx + r - 2 * q, cy - r * 0.75, cx + r, cy - r * 0.75 + 2 * q], fill=fill)
        d.polygon([(cx - r * 0.98, cy - r * 0.25), (cx + r * 0.98, cy - r * 0.25), (cx, cy + r)], fill=fill)


def render_scene(scene: Scene, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3]; deterministic given the scene."""
    scale = 4 if size <= 128 else 1  # draw large, downsample: cheap antialiasing
    img = _background(scene, size * scale)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw(d, o, size * scale)
    if scale > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


def mention(obj: SceneObject, with_size: bool = True) -> str:
    return f"a {obj.size} {obj.colour} {obj.shape}" if with_size else f"a {obj.colour} {obj.shape}"


def caption(scene: Scene) -> str:
    """The canonical caption: objects left to right, then the background."""
    m = [mention(o) for o in scene.objects]
    if len(m) == 1:
        body = m[0]
    elif len(m) == 2:
        body = f"{m[0]} left of {m[1]}"
    else:
        body = f"{m[0]}, {m[1]} and {m[2]}"
    return f"{body} on a {scene.background} background"


def paraphrases(scene: Scene, rng: np.random.Generator, n: int = 1) -> list[str]:
    """Other wordings of the same content (every object's size, colour and shape stated)."""
    out = []
    for _ in range(n):
        ms = [f"a {_SYN_SIZE[o.size][rng.integers(3)]} {o.colour} {o.shape}" for o in scene.objects]
        style = rng.integers(4)
        if len(ms) == 2 and style == 0:
            body = f"{ms[1]} to the right of {ms[0]}"
        elif len(ms) == 2 and style == 1:
            body = f"{ms[0]} to the left of {ms[1]}"
        else:
            order = rng.permutation(len(ms)) if style >= 2 else range(len(ms))
            parts = [ms[i] for i in order]
            body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        bg = scene.background
        lead = ["", "there is ", "a picture of ", "an image with "][rng.integers(4)]
        tail = [f" on a {bg} background", f" with a {bg} background", f" over a {bg} background"][rng.integers(3)]
        out.append(f"{lead}{body}{tail}")
    return out


_TRIPLE = re.compile(r"\b(" + "|".join(SIZES) + r") (" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")\b")


def parse_caption(text: str) -> list[tuple[str, str, str]]:
    """(size, colour, shape) triples of a canonical caption, in order."""
    return [tuple(m) for m in _TRIPLE.findall(text.lower())]


def parse_background(text: str) -> str | None:
    m = re.search(r"\b(" + "|".join(BACKGROUNDS) + r") background\b", text.lower())
    return m.group(1) if m else None


def vocabulary() -> list[str]:
    """Every word any generated text (scenes, sounds, tasks) can contain."""
    from mmdemo.toyworld import sounds, tasks

    words = set(SHAPES) | set(COLOURS) | set(BACKGROUNDS) | {w for ws in _SYN_SIZE.values() for w in ws}
    words |= set("a left of right to the and on with over background there is picture an image , ?".split())
    words |= sounds.WORDS | tasks.WORDS
    return sorted(words)
