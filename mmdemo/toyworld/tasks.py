"""Classification tasks over the generated world that truly need fusion.

Each label depends on how the modalities relate, not on any one of them: the
question is drawn independently of the label (text alone is at chance) and "no"
scenes hold a look-alike of the asked object (the image alone is at chance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmdemo.errors import MMDemoError
from mmdemo.toyworld import scenes, sounds

WORDS = {"is", "there", "?", "with"}
# Single sounds that differ clearly from each other, for the image+text+audio task.
SOUND_MATCH_CLASSES = (("tone", "low sine"), ("tone", "high sine"), ("chirp", "rising"), ("chirp", "falling"),
                       ("noise", "white"), ("clicks", "fast"), ("clicks", "slow"), ("chord", "major"))


@dataclass
class Example:
    image: np.ndarray | None
    text: str
    audio: np.ndarray | None
    label: str


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
        raise MMDemoError(f"Unknown task {name!r}. Available: {', '.join(TASKS)}.") from None


def _pairs(split: str) -> list[tuple[str, str]]:
    return [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES
            if split != "train" or (c, s) not in scenes.HELD_OUT]


def _scene(rng, q, present: bool, split: str, size: int) -> np.ndarray:
    """A scene that contains pair ``q`` or, if not, a look-alike sharing its colour or shape."""
    pairs = _pairs(split)
    if present:
        sc = scenes.sample_scene(rng, split="any", required=[q], forbid=set(scenes.HELD_OUT) - {q} if split == "train" else None)
    else:
        alike = [p for p in pairs if p != q and (p[0] == q[0] or p[1] == q[1])]
        decoy = alike[rng.integers(len(alike))]
        forbid = {q} | (set(scenes.HELD_OUT) if split == "train" else set())
        sc = scenes.sample_scene(rng, split="any", required=[decoy], forbid=forbid)
    return scenes.render_scene(sc, size=size)


def make_examples(task: str, n: int, seed: int, split: str = "train", image_size: int = 64) -> list[Example]:
    """``n`` examples with balanced labels; ``split="train"`` avoids held-out pairs."""
    info = task_info(task)
    rng = np.random.default_rng(seed)
    pairs = _pairs(split)
    out = []
    for k in range(n):
        label_idx = k % len(info.labels)
        c, s = pairs[rng.integers(len(pairs))]
        if task == "scene_qa":
            present = label_idx == 1
            out.append(Example(_scene(rng, (c, s), present, split, image_size), f"is there a {c} {s}?", None,
                               info.labels[label_idx]))
        else:
            image_ok = label_idx in (0, 2)
            sound_ok = label_idx in (0, 1)
            said = SOUND_MATCH_CLASSES[rng.integers(len(SOUND_MATCH_CLASSES))]
            heard = said if sound_ok else [k2 for k2 in SOUND_MATCH_CLASSES if k2 != said][rng.integers(len(SOUND_MATCH_CLASSES) - 1)]
            spec = sounds.sample_sound(rng, n_events=1, keys=(heard,))
            text = f"a {c} {s} with {sounds.EVENTS[said]}"
            out.append(Example(_scene(rng, (c, s), image_ok, split, image_size), text, sounds.render_sound(spec),
                               info.labels[label_idx]))
    order = rng.permutation(n)
    return [out[i] for i in order]
