"""Where the tiny bundle's world lies: the build's ``familiarity`` stage, and what
``eval`` reports about inputs from outside it.

The stage embeds held-out in-world images of the first generator (two fresh sets,
in the fixed and varied looks training used), fits each image encoder's
:class:`mmdemo.familiarity.Familiarity` on one set and sets its threshold on the
other, so 1% of in-world inputs are flagged. The audio tower's
:class:`mmdemo.familiarity.FrameFamiliarity` is fitted and calibrated the same way on
clips of *both* generators (fresh seeds, never those ``eval`` measures): a region
drawn around one renderer flagged 11% of another's valid clips. :func:`out_of_domain_report` then
measures, on inputs never used to set anything, the share flagged of: fresh in-world
inputs, the second generator's, photos (scikit-image's bundled ones, whole and
cropped), speech (espeak-ng, when installed) and music-like clips (melodies of
plucked notes made with numpy/scipy).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mmdemo.familiarity import Familiarity, path_for
from mmdemo.training import tiny_configs

PHOTOS = ("astronaut", "camera", "cat", "coffee", "rocket", "horse", "moon", "page", "text", "clock", "coins",
          "brick", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "retina", "cell")
SENTENCES = ("hello and welcome to the demo", "the quick brown fox jumps over the lazy dog",
             "please leave a message after the tone", "it is going to rain this afternoon",
             "one two three four five six seven", "can you hear me now", "turn left at the next corner",
             "thank you for calling", "the meeting starts at nine", "what a beautiful day")


def _world(n: int, seed: int, varied: float):
    """``n`` in-world scenes and clips of the first generator (any split), a share
    ``varied`` of them in a varied look or voice."""
    from mmdemo.toyworld import scenes, sounds

    rng = np.random.default_rng(seed)
    images, waves = [], []
    for _ in range(n):
        look = rng if rng.random() < varied else None
        scene = scenes.sample_scene(rng, split="any")
        images.append(Image.fromarray(scenes.render_scene(scene, tiny_configs.IMAGE_SIZE, rng=look)))
        waves.append(sounds.render_sound(sounds.sample_sound(rng), rng=look))
    return images, waves


def second_renderers(sample_rate: int, seed: int, size: int = tiny_configs.IMAGE_SIZE):
    """(image(scene), sound(spec)) drawn by the second generator (never trained on), sounds
    resampled to ``sample_rate`` as the app does."""
    from mmdemo.media import load_audio
    from mmdemo.toyworld import second_generator

    draw = np.random.default_rng(seed + 17)  # the second generator's own choices

    def sound2(spec):
        sr, wave = second_generator.render_sound(spec, draw)
        return load_audio((sr, wave), target_sr=sample_rate).wave  # the app's own resampling

    def image2(scene):
        return second_generator.render_scene(scene, draw, size=size)

    return image2, sound2


def _second_waves(n: int, seed: int, sample_rate: int) -> list[np.ndarray]:
    from mmdemo.toyworld import sounds

    rng, (_, sound2) = np.random.default_rng(seed), second_renderers(sample_rate, seed)
    return [sound2(sounds.sample_sound(rng)) for _ in range(n)]


def calibrate(out: Path, seed: int, varied: float, n: int, bar=lambda it, **kw: it) -> dict:
    """Fit and save each encoder's familiarity beside its weights (``n`` in-world inputs
    to fit, ``n`` others to set the threshold); returns the thresholds."""
    from mmdemo.familiarity import FrameFamiliarity
    from mmdemo.models.audio_tower import SAMPLE_RATE, familiar_frames
    from mmdemo.training.bundle_io import load_bundle

    sets = [_world(n, seed + 300 + k, varied) for k in bar(range(2), desc="familiarity data")]
    clip, coca, _ = load_bundle(out)
    report = {}
    for name, measure in (("tiny-clip", clip.familiar_features), ("tiny-coca", coca.familiar_features)):
        fam = Familiarity.fit(measure(sets[0][0]), measure(sets[1][0]), model=name)
        fam.save(path_for(out / f"{name}.safetensors"))
        report[name] = round(fam.threshold, 3)
    # Clips: half as many again from the second generator in each set.
    clips = [[familiar_frames(w) for w in sets[k][1] + _second_waves(n // 2, seed + 300 + 10 * k, SAMPLE_RATE)]
             for k in range(2)]
    fam = FrameFamiliarity.fit(clips[0], clips[1], seed=seed, model="tiny-audio",
                               renderers=["toyworld.sounds", "toyworld.second_generator"])
    fam.save(path_for(out / "tiny-audio.safetensors"))
    report["tiny-audio"] = round(fam.threshold, 3)
    return report


# ------------------------------------------------------------------ out-of-domain inputs


def photos(size: int = tiny_configs.IMAGE_SIZE) -> list[Image.Image]:
    """scikit-image's bundled photos (no download), whole and as four corner crops."""
    import skimage.data

    out = []
    for name in PHOTOS:
        try:
            arr = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a photo that needs a download is skipped
            continue
        img = Image.fromarray(arr).convert("RGB")
        w, h = img.size
        crops = [img] + [img.crop(box) for box in ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2),
                                                    (0, h // 2, w // 2, h), (w // 2, h // 2, w, h))]
        out += [c.resize((size, size), Image.Resampling.BICUBIC) for c in crops]
    return out


# espeak-ng voices and speeds: male and female, slow and quick.
VOICES = (("en", 150), ("en+f3", 190), ("en-us+m3", 170), ("en+f4", 130))


def speech(sample_rate: int = 16000) -> list[np.ndarray] | None:
    """Sentences spoken by espeak-ng (four voices and speeds); None when it is not installed."""
    from mmdemo.media import load_audio

    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            for voice, speed in VOICES:
                path = Path(tmp) / f"{i}-{speed}.wav"
                subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                               capture_output=True, timeout=30)
                out.append(load_audio(path, target_sr=sample_rate).wave)
    return out


def music(n: int = 20, sample_rate: int = 16000, seed: int = 7) -> list[np.ndarray]:
    """Melodies of plucked notes (Karplus-Strong-like decaying harmonics, scipy-filtered)
    over a bass line: several notes at once and in quick succession, unlike any one event."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t_total = rng.uniform(3.0, 4.0)
        x = np.zeros(int(t_total * sample_rate))
        pos, beat = 0.0, rng.uniform(0.15, 0.35)
        while pos < t_total - beat:
            f = 220 * 2 ** (rng.integers(-12, 13) / 12)
            n_s = int(min(1.0, t_total - pos) * sample_rate)
            t = np.arange(n_s) / sample_rate
            note = sum(np.sin(2 * np.pi * f * k * t) * np.exp(-t * (3 + 2 * k)) / k for k in range(1, 7))
            start = int(pos * sample_rate)
            x[start:start + n_s] += note
            pos += beat * rng.choice([1, 1, 2])
        bass = np.sin(2 * np.pi * 110 * 2 ** (rng.integers(-5, 5) / 12) * np.arange(len(x)) / sample_rate)
        x = lfilter([0.3, 0.3], [1.0], x + 0.5 * bass)
        out.append((0.8 * x / np.abs(x).max()).astype(np.float32))
    return out


def _share(flags) -> float | None:
    return None if flags is None else round(float(np.mean(flags)), 4)


def out_of_domain_report(clip, coca, audio, *, seed: int, second_images, second_waves, n: int = 500) -> dict:
    """Share of inputs each encoder flags as unfamiliar, by where the inputs come from."""
    images, waves = _world(n, seed + 29, 0.5)
    photo = photos()
    voice = speech(audio.sample_rate)
    tunes = music(sample_rate=audio.sample_rate)
    out = {}
    for name, model, flag, sets in (
            ("image (tiny-clip)", clip, clip.unfamiliar_images, {"in_world": images, "second_generator": second_images,
                                                                   "photos": photo}),
            ("image (tiny-coca)", coca, coca.unfamiliar_images, {"in_world": images,
                                                                   "second_generator": second_images, "photos": photo}),
            ("audio (tiny-audio)", audio, audio.unfamiliar_waves,
             {"in_world": waves, "second_generator": second_waves, "speech": voice, "music": tunes})):
        if getattr(model, "familiarity", None) is None:
            out[name] = None
            continue
        out[name] = {k: _share(flag(v) if v else None) for k, v in sets.items()}
        out[name]["n"] = {k: (len(v) if v else 0) for k, v in sets.items()}
        out[name]["threshold"] = round(model.familiarity.threshold, 3)
    out["speech_source"] = "espeak-ng" if voice is not None else "espeak-ng not installed: not measured"
    return out
