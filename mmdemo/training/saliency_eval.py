"""How often a "why it matched" map points at the right thing: on generated two-object
scenes, one object named, does the map's peak fall inside that object's box?

Reported by ``python -m mmdemo eval --json`` under ``saliency`` (per method, with the
chance rate: the share of the image the named boxes cover, where a peak dropped at
random would land)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from mmdemo.tasks.match_maps import IMAGE_METHODS, image_maps, peak_of
from mmdemo.toyworld import scenes


def saliency_hit_rate(clip, *, seed: int, n: int = 400, render: Callable | None = None,
                      methods=tuple(IMAGE_METHODS), batch: int = 50) -> dict:
    """``render(scene) -> uint8 image`` (default: the first generator at the model's size)."""
    render = render or (lambda s: scenes.render_scene(s))
    rng = np.random.default_rng(seed + 71)  # draws of its own, apart from the other sections'
    items = []
    for _ in range(n):
        scene = scenes.sample_scene(rng, n_objects=2, split="train")
        named = scene.objects[int(rng.integers(2))]
        items.append((scene, scenes.mention(named, with_size=bool(rng.integers(2))), scenes.box(named)))
    images = [Image.fromarray(render(s)) for s, _, _ in items]
    texts = [t for _, t, _ in items]
    out = {"n": n, "chance": round(float(np.mean([(b[2] - b[0]) * (b[3] - b[1]) for _, _, b in items])), 4),
           "task": "two-object scenes, one object named; the map's peak inside its box"}
    for method in methods:
        hits = 0
        for start in range(0, n, batch):
            heats = image_maps(clip, images[start:start + batch], texts[start:start + batch], method)
            for heat, (_, _, (x0, y0, x1, y1)) in zip(heats, items[start:start + batch]):
                x, y = peak_of(heat)
                hits += x0 <= x <= x1 and y0 <= y <= y1
        out[method] = round(hits / n, 4)
    return out
