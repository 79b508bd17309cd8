"""The generated data the tiny bundle trains on: a stream of scenes and sounds.

Pools of scenes and sounds are drawn up front; every step then replaces the oldest
``refresh_*`` of each with new ones, so over a build the model sees several times
more distinct inputs than the pools hold (a fixed 20,000-image pool was memorised:
caption loss 0.05). Most inputs are drawn in a varied look or voice within what
their words mean (``render_scene(..., rng=...)``, ``render_sound(..., rng=...)``;
see toyworld.meanings); the rest in the generator's fixed one. Texts get fresh
wordings every step, and hard negatives that bind the same words differently.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mmdemo.training import tiny_configs


class Pools:
    """Scenes and sounds, refreshed as training goes; each step draws a batch and fresh wordings."""

    def __init__(self, opts, rng: np.random.Generator, bar: Callable, with_sounds: bool = True,
                 with_scenes: bool = True):
        """``opts``: the build's options (``image_pool``/``sound_pool`` say how many,
        ``varied`` what share is drawn in a varied look or voice)."""
        from mmdemo.models.audio_tower import WINDOW_SECONDS, frames_for, input_rows
        from mmdemo.toyworld import scenes, sounds

        self.rng, self.varied = rng, float(getattr(opts, "varied", 0.0))
        # Share of a batch that also gets a hard negative (each costs a text-tower row).
        self.negatives = float(getattr(opts, "hard_negatives", 0.0))
        self.n_frames = frames_for(WINDOW_SECONDS)
        self.scenes = [scenes.sample_scene(rng, split="train") for _ in range(opts.image_pool if with_scenes else 0)]
        self.images = np.zeros((len(self.scenes), tiny_configs.IMAGE_SIZE, tiny_configs.IMAGE_SIZE, 3), np.uint8)
        self.captions = [""] * len(self.scenes)
        for i in bar(range(len(self.scenes)), desc="render scenes"):
            self._set_scene(i, self.scenes[i])
        self.sounds = [sounds.sample_sound(rng) for _ in range(opts.sound_pool if with_sounds else 0)]
        # What the audio tower reads (log-mel, pitch and peak rows), float16 to keep the pool small.
        self.audio_inputs = np.zeros((len(self.sounds), input_rows(), self.n_frames), np.float16)
        self.descriptions = [""] * len(self.sounds)
        for i in bar(range(len(self.sounds)), desc="render sounds"):
            self._set_sound(i, self.sounds[i])
        self._next_scene = self._next_sound = 0

    # -- the stream ---------------------------------------------------------------------
    def _look(self) -> np.random.Generator | None:
        return self.rng if self.rng.random() < self.varied else None

    def render(self, scene) -> np.ndarray:
        from mmdemo.toyworld import scenes

        return scenes.render_scene(scene, size=tiny_configs.IMAGE_SIZE, rng=self._look())

    def _set_scene(self, i: int, scene) -> None:
        from mmdemo.toyworld import scenes

        self.scenes[i], self.images[i], self.captions[i] = scene, self.render(scene), scenes.caption(scene)

    def _set_sound(self, i: int, spec) -> None:
        from mmdemo.models.audio_tower import fit_frames, model_inputs
        from mmdemo.toyworld import sounds

        self.sounds[i] = spec
        self.audio_inputs[i] = fit_frames(model_inputs(sounds.render_sound(spec, rng=self._look())), self.n_frames)
        self.descriptions[i] = sounds.describe(spec)

    def refresh(self, n_scenes: int, n_sounds: int) -> None:
        """Replace the oldest ``n_scenes`` scenes and ``n_sounds`` sounds with new ones."""
        from mmdemo.toyworld import scenes, sounds

        for _ in range(min(n_scenes, len(self.scenes))):
            self._set_scene(self._next_scene, scenes.sample_scene(self.rng, split="train"))
            self._next_scene = (self._next_scene + 1) % len(self.scenes)
        for _ in range(min(n_sounds, len(self.sounds))):
            self._set_sound(self._next_sound, sounds.sample_sound(self.rng))
            self._next_sound = (self._next_sound + 1) % len(self.sounds)

    # -- batches ------------------------------------------------------------------------
    def scene_batch(self, idx: np.ndarray) -> tuple[np.ndarray, list[str], list[str], list, list[str]]:
        """Images, a text per image (canonical, paraphrase, or one-object mention),
        content keys, the scenes drawn, and hard-negative captions.

        Each mention brings a *decoy* scene into the batch: a look-alike with the same
        colour or shape but not the mentioned object, so the model must bind colour to
        shape ("a red star" is not "a red circle and a blue star"). The hard negatives
        are captions of each scene with its words re-bound (:func:`rebound`)."""
        from mmdemo.toyworld import scenes

        images, texts, keys, drawn = [], [], [], []
        for i in idx:
            scene, r = self.scenes[i], self.rng.random()
            images.append(self.images[i]); drawn.append(scene)
            if r < 0.4:
                texts.append(self.captions[i]); keys.append(self.captions[i])
            elif r < 0.7:
                texts.append(scenes.paraphrases(scene, self.rng, 1)[0]); keys.append(self.captions[i])
            else:
                obj = scene.objects[self.rng.integers(len(scene.objects))]
                m = scenes.mention(obj, with_size=bool(self.rng.random() < 0.5))
                text = f"is there {m}?" if self.rng.random() < 0.5 else m
                texts.append(text); keys.append(text)
                decoy = self._decoy(obj)
                images.append(self.render(decoy)); drawn.append(decoy)
                texts.append(scenes.caption(decoy)); keys.append(scenes.caption(decoy))
        negatives = [scenes.caption(rebound(s, self.rng)) for s in drawn if self.rng.random() < self.negatives]
        return np.stack(images), texts, keys, drawn, negatives

    def _decoy(self, obj):
        from mmdemo.toyworld import scenes

        pair = (obj.colour, obj.shape)
        alike = [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES
                 if (c, s) != pair and (c == pair[0] or s == pair[1]) and (c, s) not in scenes.HELD_OUT]
        return scenes.sample_scene(self.rng, split="any", required=[alike[self.rng.integers(len(alike))]],
                                   forbid={pair} | set(scenes.HELD_OUT))

    def sound_texts(self, idx: np.ndarray) -> tuple[list[str], list[str], list[str]]:
        """A wording per sound, its content key, and a hard-negative description."""
        from mmdemo.toyworld import sounds

        texts = [self.descriptions[i] if self.rng.random() < 0.6 else sounds.paraphrases(self.sounds[i], self.rng, 1)[0]
                 for i in idx]
        negatives = [sounds.describe(rebound_sound(self.sounds[i], self.rng)) for i in idx
                     if self.rng.random() < self.negatives]
        return texts, [self.descriptions[i] for i in idx], negatives


def rebound(scene, rng: np.random.Generator):
    """The scene with its words re-bound: two objects swap colour, shape or size (or,
    with one object, one of its words changes to another). Its caption shares almost
    every word with the scene's own, so only binding tells them apart."""
    import dataclasses

    from mmdemo.toyworld import scenes

    objs = list(scene.objects)
    attr = ("colour", "shape", "size")[rng.integers(3)]
    if len(objs) >= 2:
        a, b = rng.choice(len(objs), size=2, replace=False)
        va, vb = getattr(objs[a], attr), getattr(objs[b], attr)
        if va != vb:
            objs[a], objs[b] = dataclasses.replace(objs[a], **{attr: vb}), dataclasses.replace(objs[b], **{attr: va})
            return dataclasses.replace(scene, objects=tuple(objs))
    k = int(rng.integers(len(objs)))
    choices = {"colour": tuple(scenes.COLOURS), "shape": scenes.SHAPES, "size": scenes.SIZES}[attr]
    others = [v for v in choices if v != getattr(objs[k], attr)]
    objs[k] = dataclasses.replace(objs[k], **{attr: others[rng.integers(len(others))]})
    return dataclasses.replace(scene, objects=tuple(objs))


def _swap_tone(variant: str, rng: np.random.Generator) -> str:
    from mmdemo.toyworld import sounds

    pitch, wave = variant.split()
    if rng.random() < 0.5:
        pitch = [p for p in sounds.PITCHES if p != pitch][rng.integers(2)]
    else:
        wave = [w for w in sounds.WAVES if w != wave][rng.integers(2)]
    return f"{pitch} {wave}"


# Words of one kind that a model must tell apart: a negative changes one to another.
_SOUND_SIBLINGS = {
    "tone": _swap_tone, "chirp": lambda v, rng: {"rising": "falling"}.get(v, "rising"),
    "noise": lambda v, rng: [c for c in ("white", "pink", "brown") if c != v][rng.integers(2)],
    "clicks": lambda v, rng: {"slow": "fast"}.get(v, "slow"), "chord": lambda v, rng: {"major": "minor"}.get(v, "major"),
}


def rebound_sound(spec, rng: np.random.Generator):
    """The clip's description with one thing changed: an event's variant (low <-> high,
    major <-> minor, rising <-> falling...), the loudness, or the order of two events."""
    import dataclasses

    events = list(spec.events)
    r = rng.random()
    if len(events) == 2 and r < 0.25:
        return dataclasses.replace(spec, events=(events[1], events[0]))
    if r < 0.4:
        return dataclasses.replace(spec, loud=not spec.loud)
    k = int(rng.integers(len(events)))
    e = events[k]
    events[k] = dataclasses.replace(e, variant=_SOUND_SIBLINGS[e.kind](e.variant, rng))
    return dataclasses.replace(spec, events=tuple(events))
