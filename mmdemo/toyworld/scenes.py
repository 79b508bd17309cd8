"""Generated scenes: 1-3 coloured shapes on a patterned background, with captions.

Seeded and fast (numpy + PIL). Some colour+shape pairs never appear in training
scenes (``HELD_OUT``) so evaluation can measure compositional generalisation.
All randomness lives in the :class:`Scene`, so rendering is a pure function of it.
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
# One pair per colour and per shape, so every colour and every shape still appears
# in training with its other partners.
HELD_OUT = frozenset({("red", "star"), ("green", "heart"), ("blue", "triangle"),
                      ("yellow", "ring"), ("purple", "square"), ("orange", "cross")})
SPLITS = ("train", "heldout", "any")

_SIZE_FRAC = {"small": 0.22, "large": 0.40}  # of the image side: ~14 and ~26 px at 64 px
# Triangles and stars poke out past the nominal radius; collisions use this margin.
_REACH = 1.12
_GAP = 0.02  # free space between objects, fraction of the side
# Centres this far apart in x keep "left of" unambiguous to the eye.
_MIN_DX = 0.10
_SYN_SIZE = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}

# Paraphrase templates. toyworld.vocabulary tokenises these (via WORDS), so a new wording only needs adding here.
_LEADS = ("", "there is ", "a picture of ", "an image of ", "a photo of ")
_TAILS = (" on a {bg} background", " with a {bg} background", " over a {bg} background",
          " in front of a {bg} background")
_TWO = ("{a} left of {b}", "{a} to the left of {b}", "{b} right of {a}", "{b} to the right of {a}",
        "{a} and {b}", "{b} and {a}")
_THREE = ("{a}, {b} and {c}", "from left to right {a}, {b} and {c}", "{p}, {q} and {r}")


def tokenize(text: str) -> list[str]:
    """The word split every vocabulary check uses: words, and punctuation on its own."""
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the image side
    y: float

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    tint: int = 0  # background grey jitter, so backgrounds aren't one exact colour
    hue: tuple[int, int, int] = (0, 0, 0)  # slight per-channel colour cast of the background
    phase: int = 0  # pattern offset in 1/64ths of the side

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return {o.pair for o in self.objects}


def _pairs(split: str) -> list[tuple[str, str]]:
    allp = [(c, s) for c in COLOURS for s in SHAPES]
    if split == "train":
        return [p for p in allp if p not in HELD_OUT]
    return allp


def _reach(size: str) -> float:
    return _SIZE_FRAC[size] / 2 * _REACH


def _place(rng: np.random.Generator, sizes: list[str]) -> list[tuple[float, float]]:
    """Non-overlapping centres, distinct enough in x for left/right words to hold."""
    for _ in range(300):
        pts: list[tuple[float, float, float]] = []
        for size in sizes:
            r = _reach(size)
            for _ in range(30):
                x, y = rng.uniform(r + 0.01, 1 - r - 0.01, size=2)
                if all(abs(x - px) >= _MIN_DX and math.hypot(x - px, y - py) >= r + pr + _GAP
                       for px, py, pr in pts):
                    pts.append((float(x), float(y), r))
                    break
            else:
                break
        if len(pts) == len(sizes):
            return [(x, y) for x, y, _ in pts]
    # Practically unreachable (three large objects can always fit on a zigzag), but a
    # generator must never hang or fail: fall back to that zigzag.
    n = len(sizes)
    return [((k + 0.5) / n, 0.27 if k % 2 else 0.73) for k in range(n)]


def sample_scene(rng: np.random.Generator, n_objects: int | None = None, split: str = "train",
                 required: list[tuple[str, ...]] | None = None,
                 forbid: set[tuple[str, str]] | None = None) -> Scene:
    """A random scene of 1-3 objects (uniform when ``n_objects`` is None).

    ``split``: "train" never uses a HELD_OUT pair, "heldout" has at least one, "any"
    anything. ``required``: (colour, shape) pairs, or (size, colour, shape) triples,
    that must be in the scene; ``forbid``: pairs that must not. No two objects share
    a (colour, shape) pair.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    req_pairs, req_sizes = [], []
    for item in required or ():
        if len(item) == 3:
            req_sizes.append(item[0]); req_pairs.append((item[1], item[2]))
        else:
            req_sizes.append(None); req_pairs.append((item[0], item[1]))
    forbid = set(forbid or ())
    if len(set(req_pairs)) != len(req_pairs) or forbid & set(req_pairs):
        raise ValueError(f"required pairs {req_pairs} repeat or are forbidden")
    if split == "train" and HELD_OUT & set(req_pairs):
        raise ValueError(f"required pairs {req_pairs} include a held-out pair; use split='any'")
    n = int(n_objects) if n_objects else int(rng.integers(1, 4))
    if split == "heldout" and not HELD_OUT & set(req_pairs):
        choices = sorted(p for p in HELD_OUT if p not in forbid)
        req_pairs.append(choices[rng.integers(len(choices))]); req_sizes.append(None)
    n = max(n, len(req_pairs))
    if not 1 <= n <= 3:
        raise ValueError(f"a scene holds 1-3 objects, not {n}")
    pool = [p for p in _pairs(split) if p not in forbid and p not in req_pairs]
    extra = [pool[i] for i in rng.choice(len(pool), size=n - len(req_pairs), replace=False)]
    pairs = req_pairs + extra
    sizes = [s or SIZES[rng.integers(2)] for s in req_sizes] + [SIZES[rng.integers(2)] for _ in extra]
    # Shuffle so required objects are not always the leftmost.
    order = rng.permutation(n)
    pairs, sizes = [pairs[i] for i in order], [sizes[i] for i in order]
    objs = [SceneObject(p[1], p[0], s, x, y) for p, s, (x, y) in zip(pairs, sizes, _place(rng, sizes))]
    objs.sort(key=lambda o: o.x)
    return Scene(tuple(objs), BACKGROUNDS[rng.integers(len(BACKGROUNDS))], int(rng.integers(-12, 13)),
                 tuple(int(v) for v in rng.integers(-8, 9, size=3)), int(rng.integers(0, 8)))


def sample_scene_with(rng: np.random.Generator, required: list[tuple[str, ...]], n_objects: int | None = None,
                      split: str = "any", forbid: set[tuple[str, str]] | None = None) -> Scene:
    """A scene that holds ``required`` and none of ``forbid`` (tasks build on this)."""
    return sample_scene(rng, n_objects, split, required=required, forbid=forbid)


def _background(scene: Scene, size: int, look: "_Look") -> Image.Image:
    base = np.array([look.grey + scene.tint] * 3) + np.array(scene.hue) + np.array(look.cast)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in np.clip(base, 0, 255)))
    d = ImageDraw.Draw(img)
    alt = tuple(int(v) for v in np.clip(base + look.contrast, 0, 255))
    step = max(4, round(look.period * size / 64))
    off = scene.phase * size // 64 % step - step
    if scene.background == "striped":
        for i in range(off, size, step):
            d.rectangle([i, 0, i + step // 2 - 1, size], fill=alt)
    elif scene.background == "dotted":
        r = max(1.0, look.dot * size / 64)
        for i in range(off + step // 2, size + step, step):
            for j in range(off + step // 2, size + step, step):
                d.ellipse([i - r, j - r, i + r, j + r], fill=alt)
    elif scene.background == "checkered":
        for i in range(off, size, step):
            for j in range(off, size, step):
                if ((i - off) // step + (j - off) // step) % 2:
                    d.rectangle([i, j, i + step - 1, j + step - 1], fill=alt)
    return img


def _poly(cx, cy, r, n, start=-math.pi / 2, inner=None):
    pts = []
    for k in range(n * (2 if inner else 1)):
        a = start + k * math.pi * 2 / (n * (2 if inner else 1))
        rr = inner if (inner and k % 2) else r
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


@dataclass(frozen=True)
class _Look:
    """Everything about drawing that the words leave open (see toyworld.meanings).
    The defaults are this generator's one fixed point; :func:`render_scene` with an
    ``rng`` draws a look anywhere in the documented ranges instead (training uses that
    as augmentation, so the model learns the words rather than one way of drawing)."""
    grey: float = 150.0
    cast: tuple[float, float, float] = (0.0, 0.0, 0.0)
    contrast: float = 40.0
    period: float = 8.0  # px at 64 px
    dot: float = 1.5  # px at 64 px
    supersample: int = 4
    noise: float = 0.0
    blur: float = 0.0


@dataclass(frozen=True)
class _ObjectLook:
    diameter: float | None = None  # fraction of the side; None: the size word's nominal value
    rotation: float = 0.0  # radians
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ring: float = 0.4  # line width / radius
    star: float = 0.45 / 1.1  # inner / outer radius
    cross: float = 0.35  # arm half-width / half-length
    diamond: float = 0.75 / 1.1  # half-width / half-height


def _sample_look(rng: np.random.Generator) -> _Look:
    from mmdemo.toyworld import meanings as m

    return _Look(grey=float(rng.uniform(*m.BACKGROUND_GREY)), cast=tuple(rng.uniform(-6, 6, size=3)),
                 contrast=float(rng.uniform(*m.PATTERN_CONTRAST) * rng.choice([-1.0, 1.0])),
                 period=float(rng.uniform(*m.PATTERN_PERIOD_PX)), dot=float(rng.uniform(*m.DOT_RADIUS_PX)),
                 supersample=int(rng.choice([1, 2, 3, 4])), noise=float(rng.uniform(0, 4) * (rng.random() < 0.6)),
                 blur=float(rng.uniform(0.3, 0.8) * (rng.random() < 0.3)))


def _sample_object_look(obj: SceneObject, rng: np.random.Generator) -> _ObjectLook:
    from mmdemo.toyworld import meanings as m

    return _ObjectLook(diameter=float(rng.uniform(*m.SIZE_DIAMETER[obj.size])),
                       rotation=math.radians(float(rng.uniform(-m.MAX_ROTATION_DEG, m.MAX_ROTATION_DEG))),
                       jitter=tuple(rng.uniform(-m.COLOUR_JITTER, m.COLOUR_JITTER, size=3)),
                       ring=float(rng.uniform(*m.RING_WIDTH)), star=float(rng.uniform(*m.STAR_INNER)),
                       cross=float(rng.uniform(*m.CROSS_ARM)), diamond=float(rng.uniform(0.56, 0.72)))


def _turn(pts, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in pts]


def _draw(d: ImageDraw.ImageDraw, o: SceneObject, size: int, look: _ObjectLook = _ObjectLook()) -> None:
    diameter = look.diameter if look.diameter is not None else _SIZE_FRAC[o.size]
    cx, cy, r = o.x * size, o.y * size, diameter * size / 2
    fill = tuple(int(v) for v in np.clip(np.array(COLOURS[o.colour]) + look.jitter, 0, 255))

    def poly(pts):
        d.polygon(_turn(pts, cx, cy, look.rotation), fill=fill)

    if o.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif o.shape == "square":
        s = r * 0.85
        poly([(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)])
    elif o.shape == "triangle":
        poly(_poly(cx, cy + r * 0.15, r * 1.1, 3))
    elif o.shape == "star":
        poly(_poly(cx, cy, r * 1.1, 5, inner=r * 1.1 * look.star))
    elif o.shape == "cross":
        w = r * look.cross
        poly([(cx - r, cy - w), (cx + r, cy - w), (cx + r, cy + w), (cx - r, cy + w)])
        poly([(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy + r), (cx - w, cy + r)])
    elif o.shape == "diamond":
        h = r * 1.1
        poly([(cx, cy - h), (cx + h * look.diamond, cy), (cx, cy + h), (cx - h * look.diamond, cy)])
    elif o.shape == "ring":
        w = max(2.0, r * look.ring)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=int(round(w)))
    elif o.shape == "heart":
        q = r * 0.55
        (lx, ly), (rx, ry) = _turn([(cx - r + q, cy - r * 0.75 + q), (cx + r - q, cy - r * 0.75 + q)], cx, cy,
                                   look.rotation)
        d.ellipse([lx - q, ly - q, lx + q, ly + q], fill=fill)
        d.ellipse([rx - q, ry - q, rx + q, ry + q], fill=fill)
        poly([(cx - r * 0.98, cy - r * 0.25), (cx + r * 0.98, cy - r * 0.25), (cx, cy + r)])


def render_scene(scene: Scene, size: int = 64, rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 [size, size, 3]; deterministic given the scene (and ``rng``'s state).

    Without ``rng``: this generator's fixed way of drawing. With it: a way of drawing
    drawn anywhere the words allow (object sizes within their size word, colours
    within their name, slight rotation, line widths, background grey, pattern period
    and contrast, anti-aliasing, blur and sensor noise: toyworld.meanings)."""
    look = _sample_look(rng) if rng is not None else _Look()
    scale = (look.supersample if size <= 128 else 1)  # draw large, downsample: cheap antialiasing
    img = _background(scene, size * scale, look)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw(d, o, size * scale, _sample_object_look(o, rng) if rng is not None else _ObjectLook())
    if scale > 1:
        img = img.resize((size, size), Image.Resampling.BOX)
    if look.blur:
        from PIL import ImageFilter

        img = img.filter(ImageFilter.GaussianBlur(look.blur))
    out = np.asarray(img, dtype=np.uint8)
    if look.noise:
        out = np.clip(out + rng.normal(0, look.noise, size=out.shape), 0, 255).astype(np.uint8)
    return out


def box(obj: SceneObject) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the square the object is drawn in, as fractions of
    the image side (this generator's fixed way of drawing)."""
    r = _SIZE_FRAC[obj.size] / 2
    return obj.x - r, obj.y - r, obj.x + r, obj.y + r


def mention(obj: SceneObject, with_size: bool = True) -> str:
    """"a large red star" (or "a red star")."""
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
    """Other wordings of the same content: every object's size, colour and shape is
    stated, and so is the background (build_tiny tells captions from one-object
    mentions by the word "background")."""
    out = []
    for _ in range(n):
        ms = [f"a {_SYN_SIZE[o.size][rng.integers(3)]} {o.colour} {o.shape}" for o in scene.objects]
        if len(ms) == 1:
            body = ms[0]
        elif len(ms) == 2:
            body = _TWO[rng.integers(len(_TWO))].format(a=ms[0], b=ms[1])
        else:
            p, q, r = (ms[i] for i in rng.permutation(3))
            body = _THREE[rng.integers(len(_THREE))].format(a=ms[0], b=ms[1], c=ms[2], p=p, q=q, r=r)
        lead = _LEADS[rng.integers(len(_LEADS))]
        tail = _TAILS[rng.integers(len(_TAILS))].format(bg=scene.background)
        out.append(f"{lead}{body}{tail}")
    return out


_TRIPLE = re.compile(r"\b(" + "|".join(SIZES) + r") (" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")\b")


def parse_caption(text: str) -> list[tuple[str, str, str]]:
    """(size, colour, shape) triples of a canonical caption, in order."""
    return [tuple(m) for m in _TRIPLE.findall(text.lower())]


def parse_background(text: str) -> str | None:
    m = re.search(r"\b(" + "|".join(BACKGROUNDS) + r") background\b", text.lower())
    return m.group(1) if m else None


WORDS = (set(SHAPES) | set(COLOURS) | set(SIZES) | set(BACKGROUNDS) | {w for ws in _SYN_SIZE.values() for w in ws}
         | {w for t in _LEADS + _TAILS + _TWO + _THREE for w in tokenize(re.sub(r"\{\w+\}", " ", t))}
         | set(tokenize(caption(Scene((SceneObject("ring", "red", "small", 0, 0),) * 3, "plain")))))

