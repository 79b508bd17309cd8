"""The generated data the tiny bundle trains on: scenes and sounds drawn once, batches
with fresh wordings drawn every step."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mmdemo.training import tiny_configs


class Pools:
    """Pre-generated scenes and sounds; each step draws a batch and fresh wordings."""

    def __init__(self, opts, rng: np.random.Generator, bar: Callable):
        """``opts``: the build's options (``image_pool`` and ``sound_pool`` say how many)."""
        from mmdemo.models.audio_tower import N_MELS, WINDOW_SECONDS, fit_frames, frames_for, log_mel
        from mmdemo.toyworld import scenes, sounds

        self.rng = rng
        self.scenes = [scenes.sample_scene(rng, split="train") for _ in range(opts.image_pool)]
        self.images = np.stack([scenes.render_scene(s, size=tiny_configs.IMAGE_SIZE)
                                for s in bar(self.scenes, desc="render scenes")])
        self.captions = [scenes.caption(s) for s in self.scenes]
        self.sounds = [sounds.sample_sound(rng) for _ in range(opts.sound_pool)]
        n_frames = frames_for(WINDOW_SECONDS)
        self.mels = np.zeros((len(self.sounds), N_MELS, n_frames), np.float16)
        for i, spec in enumerate(bar(self.sounds, desc="render sounds")):
            self.mels[i] = fit_frames(log_mel(sounds.render_sound(spec)), n_frames)
        self.descriptions = [sounds.describe(s) for s in self.sounds]

    def scene_batch(self, idx: np.ndarray) -> tuple[np.ndarray, list[str], list[str], list]:
        """Images, a text per image (canonical, paraphrase, or one-object mention),
        content keys and the scenes drawn. Each mention brings a *decoy* scene into the
        batch: a look-alike with the same colour or shape but not the mentioned object,
        so the model must bind colour to shape ("a red star" is not "a red circle and a
        blue star")."""
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
                images.append(scenes.render_scene(decoy, size=tiny_configs.IMAGE_SIZE)); drawn.append(decoy)
                texts.append(scenes.caption(decoy)); keys.append(scenes.caption(decoy))
        return np.stack(images), texts, keys, drawn

    def _decoy(self, obj):
        from mmdemo.toyworld import scenes

        pair = (obj.colour, obj.shape)
        alike = [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES
                 if (c, s) != pair and (c == pair[0] or s == pair[1]) and (c, s) not in scenes.HELD_OUT]
        return scenes.sample_scene(self.rng, split="any", required=[alike[self.rng.integers(len(alike))]],
                                   forbid={pair} | set(scenes.HELD_OUT))

    def sound_texts(self, idx: np.ndarray) -> tuple[list[str], list[str]]:
        from mmdemo.toyworld import sounds

        texts = [self.descriptions[i] if self.rng.random() < 0.6 else sounds.paraphrases(self.sounds[i], self.rng, 1)[0]
                 for i in idx]
        return texts, [self.descriptions[i] for i in idx]
