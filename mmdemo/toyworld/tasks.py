"""Classification tasks over the generated world that truly need fusion.

Each label depends on how the modalities relate, not on any one of them: the label is
drawn first and the question independently of it (text alone is at chance), and "no"
scenes hold a look-alike of the asked object (the image alone is at chance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.toyworld import scenes, sounds

WORDS = {"is", "there", "?", "with", "a"}
# Single sounds that differ clearly from each other, for the image+text+audio task.
SOUND_MATCH_CLASSES = (("tone", "low sine"), ("tone", "high sine"), ("chirp", "rising"), ("chirp", "falling"),
                       ("noise", "white"), ("clicks", "fast"), ("clicks", "slow"), ("chord", "major"))
SIZED_QUESTION_RATE = 0.3  # share of scene_qa questions that also ask for a size


@dataclass
class Example:
    image: np.ndarray | None
    text: str
    audio: np.ndarray | None
    label: str
    # What was generated, for checks and error analysis; models never see these.
    scene: scenes.Scene | None = None
    sound: sounds.SoundSpec | None = None


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    modalities: tuple[str, ...]
    labels: tuple[str, ...]


TASKS = {
    "scene_qa": TaskInfo("scene_qa", "Image + question 'is there a red star?' -> yes/no.",
                         ("image", "text"), ("no", "yes")),
    "scene_sound_match": TaskInfo(
        "scene_sound_match",
        "Image + text 'a red star with a rising chirp' + audio -> does the text agree with the picture and the sound?",
        ("image", "text", "audio"), ("match", "image mismatch", "sound mismatch", "both mismatch")),
}


def task_info(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise MMDemoError("task_unknown", f"Unknown task {name!r}. Available: {', '.join(TASKS)}.") from None


def _question_pairs(split: str) -> list[tuple[str, str]]:
    if split == "heldout":
        return sorted(scenes.HELD_OUT)
    return [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES
            if split == "any" or (c, s) not in scenes.HELD_OUT]


def _pick(rng: np.random.Generator, items: list):
    return items[rng.integers(len(items))]


def question_scene(rng: np.random.Generator, pair: tuple[str, str], size: str | None, present: bool,
                   split: str = "train") -> scenes.Scene:
    """A scene that holds ``pair`` (of ``size`` when given) or, if not ``present``, a
    look-alike: the same pair in the other size, an object sharing its colour or its
    shape, or one of each (so "red" and "star" are both there, just not together)."""
    heldout = split == "heldout"
    # Held-out scenes of either label hold a held-out pair and 2-3 objects, so neither
    # the count nor "has an unseen composition" gives the label away.
    n = int(rng.integers(2, 4)) if heldout else int(rng.integers(1, 4))
    forbid = set(scenes.HELD_OUT) - {pair} if split == "train" else set()
    if present:
        return scenes.sample_scene_with(rng, [(size, *pair) if size else pair], n, "any", forbid)
    pool = [p for p in _question_pairs("any") if p not in forbid and p != pair]
    same_colour = [p for p in pool if p[0] == pair[0]]
    same_shape = [p for p in pool if p[1] == pair[1]]
    kinds = ["decoy"] + (["binding"] if n >= 2 + heldout else []) + (["other size"] if size else [])
    kind = _pick(rng, kinds)
    if kind == "other size":
        required = [(scenes.SIZES[1 - scenes.SIZES.index(size)], *pair)]
        forbid = forbid - {pair}
    else:
        forbid = forbid | {pair}
        if kind == "binding":
            required = [_pick(rng, same_colour), _pick(rng, same_shape)]
        else:
            required = [_pick(rng, same_colour + same_shape)]
    if heldout and not any(tuple(r[-2:]) in scenes.HELD_OUT for r in required):
        required.append(_pick(rng, sorted(scenes.HELD_OUT - {pair})))
    return scenes.sample_scene_with(rng, required, n, "any", forbid)


def make_examples(task: str, n: int, seed: int, split: str = "train", image_size: int = 64,
                  render: bool = True, varied: float = 0.0) -> list[Example]:
    """``n`` examples with balanced labels (exactly, when ``n`` is a multiple of the
    label count), shuffled. ``split="train"`` avoids held-out pairs everywhere;
    ``"heldout"`` asks only about held-out pairs. ``render=False`` skips pixels and
    audio (image and audio are None) for fast statistics over many examples.
    ``varied``: the share drawn in a varied look and voice (``render_scene(rng=...)``);
    the content, labels and texts do not change with it."""
    info = task_info(task)
    if split not in scenes.SPLITS:
        raise MMDemoError("split_unknown", f"Unknown split {split!r}. Available: {', '.join(scenes.SPLITS)}.")
    rng = np.random.default_rng(seed)
    pairs = _question_pairs(split)
    out = []
    for k in range(n):
        label_idx = k % len(info.labels)
        c, s = _pick(rng, pairs)
        if task == "scene_qa":
            size = _pick(rng, list(scenes.SIZES)) if rng.random() < SIZED_QUESTION_RATE else None
            scene = question_scene(rng, (c, s), size, label_idx == 1, split)
            text = f"is there a {size + ' ' if size else ''}{c} {s}?"
            spec = None
        else:
            image_ok, sound_ok = label_idx in (0, 2), label_idx in (0, 1)
            said = _pick(rng, SOUND_MATCH_CLASSES)
            heard = said if sound_ok else _pick(rng, [k2 for k2 in SOUND_MATCH_CLASSES if k2 != said])
            spec = sounds.sample_sound(rng, n_events=1, keys=(heard,))
            scene = question_scene(rng, (c, s), None, image_ok, split)
            text = f"a {c} {s} with {sounds.EVENTS[said]}"
        look = np.random.default_rng([seed, k]) if varied and rng.random() < varied else None
        out.append(Example(scenes.render_scene(scene, size=image_size, rng=look) if render else None, text,
                           sounds.render_sound(spec, rng=look) if render and spec else None,
                           info.labels[label_idx], scene, spec))
    return [out[i] for i in rng.permutation(n)]
