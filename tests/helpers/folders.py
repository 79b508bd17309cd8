"""Folders and zips as a user hands them to the Folders tab: generated scenes or sounds,
a captions.json, and the odd broken file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "diamond", "ring")


def write_scenes(folder: Path, n: int = 8, seed: int = 0, captions: bool = True) -> dict[str, str]:
    """``n`` one-object scenes as PNG files (colour cycles through COLOURS) and, with
    ``captions``, their captions.json. Returns {file name: caption}."""
    import numpy as np
    from PIL import Image

    from mmdemo.toyworld import scenes

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        sc = scenes.sample_scene_with(rng, [("large", colour, shape)], 1, "any")
        name = f"{i:03d}-{colour}-{shape}.png"
        Image.fromarray(scenes.render_scene(sc, size=64)).save(folder / name)
        out[name] = scenes.caption(sc)
    if captions:
        (folder / "captions.json").write_text(json.dumps(out))
    return out


def write_sounds(folder: Path, kinds=(("chirp", "rising"), ("noise", "white"), ("tone", "low sine"))) -> dict[str, str]:
    """One clip per (kind, variant) as 16-bit WAV; returns {file name: description}."""
    from mmdemo.toyworld import sounds
    from mmdemo.toyworld.export import wav_bytes

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n, (kind, variant) in enumerate(kinds):
        spec = sounds.SoundSpec((sounds.SoundEvent(kind, variant, 2.5, 0.0),), loud=True, seed=10 + n)
        name = f"{n:02d}-{kind}-{variant.replace(' ', '-')}.wav"
        (folder / name).write_bytes(wav_bytes(sounds.render_sound(spec)))
        out[name] = sounds.describe(spec)
    return out


def corrupt_png(path: Path) -> Path:
    """A file named .png whose bytes stop after the PNG signature and a few junk bytes."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image" * 3)
    return path


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    """Every file of ``folder`` in a zip, under ``prefix`` (e.g. "pics/")."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
    return zip_path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
