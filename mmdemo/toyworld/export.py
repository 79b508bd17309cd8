"""Write a seeded sample of the world as files: the app's bundled example galleries.

``images/`` holds PNG scenes and ``sounds/`` 16-bit WAV clips, each folder with a
``captions.json`` ({filename: canonical caption or description}). Every file is
written atomically, so a crash never leaves a half-written example behind.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mmdemo.atomic import atomic_write_bytes, atomic_write_json
from mmdemo.toyworld import scenes, sounds


def _gallery_scenes(rng: np.random.Generator, n: int) -> list[scenes.Scene]:
    # One lone object per colour first, each with a different shape, so even a short
    # gallery shows every colour and every shape once.
    out: list[scenes.Scene] = []
    shapes = list(scenes.SHAPES)
    while True:
        perm = rng.permutation(len(shapes))
        pairs = [(c, shapes[i]) for c, i in zip(scenes.COLOURS, perm)]
        if not scenes.HELD_OUT & set(pairs):
            break
    for pair in pairs[: n]:
        out.append(scenes.sample_scene_with(rng, [pair], 1, "train"))
    while len(out) < n:
        out.append(scenes.sample_scene(rng, split="train"))
    return out


def _gallery_sounds(rng: np.random.Generator, n: int) -> list[sounds.SoundSpec]:
    # Mostly single events cycling through every class, then a few two-event clips.
    n_seq = n // 4
    keys = [sounds.EVENT_KEYS[i] for i in rng.permutation(len(sounds.EVENT_KEYS))]
    out = [sounds.sample_sound(rng, n_events=1, keys=(keys[k % len(keys)],)) for k in range(n - n_seq)]
    return out + [sounds.sample_sound(rng, n_events=2) for _ in range(n_seq)]


def _slug(text: str) -> str:
    """A short, shell-friendly file name stem from a caption."""
    return "-".join(w for w in scenes.tokenize(text) if w.isalnum() and w not in ("a", "an"))[:48].rstrip("-")


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(wave: np.ndarray, sample_rate: int = sounds.SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV, the format of every generated example sound."""
    import soundfile as sf  # only when sounds are written

    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_gallery(folder: Path, files: dict[str, bytes], captions: dict[str, str]) -> None:
    """Write ``files`` and their ``captions.json`` into ``folder``, atomically file by file;
    files an earlier export listed and this one doesn't are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "captions.json"
    try:
        stale = set(json.loads(old.read_text())) - set(files)
    except (OSError, ValueError):
        stale = set()
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)
    atomic_write_json(old, captions)
    for name in stale:  # only files an earlier export listed, never anything else
        if "/" not in name and "\\" not in name:
            (folder / name).unlink(missing_ok=True)


def export_examples(out_dir: str | Path, n_images: int = 24, n_sounds: int = 16, seed: int = 1234,
                    image_size: int = 64) -> dict:
    """Write ``n_images`` scenes and ``n_sounds`` clips under ``out_dir``/images and
    ``out_dir``/sounds. Returns {"images": {file: caption}, "sounds": {file: description},
    "images_dir": path, "sounds_dir": path}."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    files, image_caps = {}, {}
    for i, scene in enumerate(_gallery_scenes(rng, n_images)):
        cap = scenes.caption(scene)
        name = f"{i:02d}-{_slug(cap.split(' on a ')[0])}.png"
        files[name], image_caps[name] = png_bytes(scenes.render_scene(scene, size=image_size)), cap
    write_gallery(out / "images", files, image_caps)

    files, sound_caps = {}, {}
    for i, spec in enumerate(_gallery_sounds(rng, n_sounds)):
        desc = sounds.describe(spec)
        name = f"{i:02d}-{_slug(desc)}.wav"
        files[name], sound_caps[name] = wav_bytes(sounds.render_sound(spec)), desc
    write_gallery(out / "sounds", files, sound_caps)
    return {"images": image_caps, "sounds": sound_caps,
            "images_dir": str(out / "images"), "sounds_dir": str(out / "sounds")}
