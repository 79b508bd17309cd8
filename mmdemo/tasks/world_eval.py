"""Evaluations of the app's own features on the generated world, reported by
``python -m mmdemo eval --json`` (the CLI hands :data:`SECTIONS` to
``mmdemo.training.evaluate.evaluate``; ``eval --only NAME`` runs one):

- ``prompt_ensemble``: zero-shot accuracy with one prompt vs the built-in ensemble;
- ``saliency``: whether a "why it matched" map points at the named object.

They live in the task layer because they measure task functions; the training layer
below must not import them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from mmdemo.tasks.classify import DEFAULT_TEMPLATE
from mmdemo.tasks.match_maps import IMAGE_METHODS, image_maps, peak_of
from mmdemo.tasks.prompts import builtin_set, ensemble_embeddings
from mmdemo.toyworld import scenes, sounds


def _top1(items: np.ndarray, truth: list[int], encode, labels: list[str], templates) -> float:
    pred = (items @ ensemble_embeddings(encode, labels, list(templates)).T).argmax(axis=1)
    return round(float(np.mean(pred == np.asarray(truth))), 4)


def _ensemble_row(items: np.ndarray, truth: list[int], encode, labels: list[str], single: str, ensemble) -> dict:
    """Top-1 zero-shot accuracy with ``single`` (what the app does without templates) vs
    the averaged ``ensemble``, and each of its templates alone (is the average better than
    just picking the best one?)."""
    alone = {t: _top1(items, truth, encode, labels, [t]) for t in ensemble}
    best = max(alone, key=alone.get)
    row = {"single": _top1(items, truth, encode, labels, [single]),
           "ensemble": _top1(items, truth, encode, labels, ensemble)}
    return {**row, "gain": round(row["ensemble"] - row["single"], 4), "single_template": single,
            "templates": len(ensemble), "best_template": best, "best_template_accuracy": alone[best],
            "worst_template_accuracy": min(alone.values()), "classes": len(labels), "n": len(truth),
            "chance": round(1 / len(labels), 4)}


def prompt_ensemble(clip, audio, seed: int, n: int = 500, image=None, sound=None) -> dict:
    """Zero-shot accuracy on the generated world, one prompt vs the built-in tiny-world
    prompt ensemble (mmdemo/tasks/prompts.py): images are one-object scenes named by
    colour and shape (the pairs seen in training), sounds single events named by
    ``sounds.sound_classes()``. ``single`` is the app's default without templates (the
    Classify tab's ``a {}``; the Audio tab's labels as typed). ``image(scene)``/``sound(spec)``
    draw the items another way (the second generator), as in :func:`_world_metrics`."""
    rng = np.random.default_rng(seed + 53)  # draws of its own, apart from the other sections'
    labels = [f"{c} {s}" for c in scenes.COLOURS for s in scenes.SHAPES if (c, s) not in scenes.HELD_OUT]
    sc = [scenes.sample_scene(rng, n_objects=1, split="train") for _ in range(n)]
    truth = [labels.index(f"{s.objects[0].colour} {s.objects[0].shape}") for s in sc]
    image = image or (lambda s: scenes.render_scene(s))
    images = clip.encode_images([Image.fromarray(image(s)) for s in sc])
    out = {"image": _ensemble_row(images, truth, clip.encode_texts, labels, DEFAULT_TEMPLATE,
                                  builtin_set("image", "tiny-world").templates)}
    names = sounds.sound_classes()
    specs = [sounds.sample_sound(rng, n_events=1) for _ in range(n)]
    truth = [names.index(sounds.EVENTS[(s.events[0].kind, s.events[0].variant)]) for s in specs]
    waves = audio.encode_waves([(sound or sounds.render_sound)(s) for s in specs])
    out["audio"] = _ensemble_row(waves, truth, audio.encode_texts, names, "{}",
                                 builtin_set("audio", "tiny-world").templates)
    return out


def saliency_hit_rate(clip, audio=None, *, seed: int, n: int = 400, image: Callable | None = None,
                      methods=tuple(IMAGE_METHODS), batch: int = 50) -> dict:
    """On generated two-object scenes, one object named: how often does the map's peak
    fall inside that object's box? Per method, with the chance rate (the share of the
    image the named boxes cover, where a peak dropped at random would land). Only on the
    first generator: the second places objects its own way, so its boxes are unknown
    here. ``image(scene) -> uint8 image`` (default: the first generator)."""
    render = image or (lambda s: scenes.render_scene(s))
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


# name -> (function, also on the second generator)
SECTIONS: dict[str, tuple[Callable, bool]] = {"prompt_ensemble": (prompt_ensemble, True),
                                              "saliency": (saliency_hit_rate, False)}
