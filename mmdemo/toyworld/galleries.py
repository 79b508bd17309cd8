"""The app's default example galleries: the bundled files, else a few rendered on the spot.

The bundled galleries (``assets/examples/images`` and ``sounds``, written by
:mod:`mmdemo.toyworld.export`) may be missing from a trimmed checkout or a wheel;
the Image and Audio tabs then still open with a small gallery generated here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mmdemo import paths
from mmdemo.toyworld import scenes, sounds
from mmdemo.toyworld.export import png_bytes, wav_bytes, write_gallery


def render_fallback_images(dest: Path) -> Path:
    """Eight generated scenes, one per colour, for when the bundled examples are absent."""
    rng = np.random.default_rng(1234)
    files, captions = {}, {}
    for n, colour in enumerate(scenes.COLOURS):
        shape = scenes.SHAPES[(n * 3) % len(scenes.SHAPES)]
        if (colour, shape) in scenes.HELD_OUT:
            shape = scenes.SHAPES[(n * 3 + 1) % len(scenes.SHAPES)]
        scene = scenes.sample_scene_with(rng, [(colour, shape)], 1, "train")
        cap = scenes.caption(scene)
        fname = f"{n:02d}-{cap.split(' on a ')[0].replace('a ', '', 1).replace(' ', '-')}.png"
        files[fname], captions[fname] = png_bytes(scenes.render_scene(scene)), cap
    write_gallery(dest, files, captions)
    return dest


def render_fallback_sounds(dest: Path) -> Path:
    """A handful of generated sounds for when the bundled examples are absent."""
    picks = [("chirp", "rising"), ("chirp", "falling"), ("noise", "white"), ("tone", "low sine"),
             ("clicks", "fast"), ("chord", "major"), ("tone", "high square"), ("noise", "brown")]
    files, captions = {}, {}
    for n, (kind, variant) in enumerate(picks):
        spec = sounds.SoundSpec((sounds.SoundEvent(kind, variant, 2.5, 0.0),), loud=n % 2 == 0, seed=100 + n)
        fname = f"{n:02d}-{kind}-{variant.replace(' ', '-')}.wav"
        files[fname], captions[fname] = wav_bytes(sounds.render_sound(spec)), sounds.describe(spec)
    write_gallery(dest, files, captions)
    return dest


_RENDERERS: dict[str, Callable[[Path], Path]] = {"images": render_fallback_images, "sounds": render_fallback_sounds}


def example_gallery(kind: str, suffixes: Iterable[str], cache_dir: Path | None = None) -> Path:
    """The folder of example ``kind`` ("images" or "sounds"): the bundled one when it holds
    a file ending in one of ``suffixes``, else one rendered into ``cache_dir`` (once), else
    into a new temporary folder."""

    render = _RENDERERS[kind]
    wanted = {s.lower() for s in suffixes}
    bundled = paths.EXAMPLES_DIR / kind  # read at call time: tests point it elsewhere
    if bundled.is_dir() and any(p.suffix.lower() in wanted for p in bundled.iterdir()):
        return bundled
    if cache_dir is not None:
        dest = Path(cache_dir) / f"example-{kind}"
        try:
            if not (dest / "captions.json").is_file():
                render(dest)
            return dest
        except OSError:
            pass  # a read-only cache folder must not stop the app: use a temporary one
    return render(Path(tempfile.mkdtemp(prefix=f"mmdemo-{kind}-")))
