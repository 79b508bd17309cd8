"""The second generator draws what its words mean (toyworld.meanings), differently from
the first, and stays out of training: the robustness figures of `eval --json` rest on it."""

import ast
from pathlib import Path

import numpy as np
import pytest

from mmdemo.toyworld import meanings, scenes, second_generator as g2, sounds

MMDEMO = Path(__file__).resolve().parents[1] / "mmdemo"


def lone(shape, colour, size, background="plain"):
    return scenes.Scene((scenes.SceneObject(shape, colour, size, 0.5, 0.5),), background)


def object_pixels(img, colour):
    dist = np.abs(img.astype(int) - np.array(scenes.COLOURS[colour])).max(axis=2)
    return dist <= meanings.COLOUR_JITTER + 12


@pytest.mark.parametrize("size", scenes.SIZES)
def test_a_circle_covers_the_area_its_size_word_means(size):
    lo, hi = meanings.SIZE_DIAMETER[size]
    areas = []
    for seed in range(12):
        img = g2.render_scene(lone("circle", "blue", size), np.random.default_rng(seed))
        areas.append(object_pixels(img, "blue").mean())
    # The edge pixels blend with the background, so allow a pixel's ring either way.
    assert np.pi * (lo - 0.03) ** 2 / 4 <= min(areas) and max(areas) <= np.pi * (hi + 0.03) ** 2 / 4
    assert max(areas) - min(areas) > 0.005  # sizes vary within the word's range


@pytest.mark.parametrize("colour", ["red", "green", "yellow", "purple", "white", "black"])
def test_objects_keep_their_colour_name(colour):
    img = g2.render_scene(lone("square", colour, "large"), np.random.default_rng(3))
    inside = object_pixels(img, colour)
    assert inside.mean() > 0.05
    median = np.median(img[inside], axis=0)
    assert np.abs(median - scenes.COLOURS[colour]).max() <= meanings.COLOUR_JITTER + 3


def test_it_draws_other_pixels_than_the_first_generator_and_is_seeded():
    rng = np.random.default_rng(0)
    scene = scenes.sample_scene(rng, n_objects=3)
    a = g2.render_scene(scene, np.random.default_rng(5))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, g2.render_scene(scene, np.random.default_rng(5)))
    assert np.abs(a.astype(int) - scenes.render_scene(scene).astype(int)).mean() > 5


def test_objects_keep_their_left_to_right_order():
    scene = scenes.Scene((scenes.SceneObject("square", "red", "small", 0.2, 0.5),
                          scenes.SceneObject("square", "blue", "small", 0.5, 0.5),
                          scenes.SceneObject("square", "green", "small", 0.8, 0.5)), "plain")
    for seed in range(8):
        img = g2.render_scene(scene, np.random.default_rng(seed))
        xs = [np.nonzero(object_pixels(img, c))[1].mean() for c in ("red", "blue", "green")]
        assert xs == sorted(xs)


def spectrum_peak(sr, wave):
    mag = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / sr)[mag.argmax()]


@pytest.mark.parametrize("pitch", list(sounds.PITCHES))
@pytest.mark.parametrize("wave", ["sine", "square", "sawtooth"])
def test_a_tone_sounds_at_its_pitch_word_and_loudness(pitch, wave):
    rng = np.random.default_rng(hash((pitch, wave)) % 1000)
    for loud in (True, False):
        spec = sounds.sample_sound(rng, n_events=1, keys=(("tone", f"{pitch} {wave}"),), loud=loud)
        sr, x = g2.render_sound(spec, rng)
        assert sr in g2.SAMPLE_RATES and x.dtype == np.float32
        lo, hi = meanings.pitch_band(pitch, wave)
        assert lo - 2 <= spectrum_peak(sr, x) <= hi + 2
        peak_db = 20 * np.log10(np.abs(x).max())
        db_lo, db_hi = meanings.PEAK_DBFS["loud" if loud else "quiet"]
        assert db_lo - 0.01 <= peak_db <= db_hi + 0.01


@pytest.mark.parametrize("variant", ["rising", "falling"])
def test_a_chirp_goes_its_way(variant):
    rng = np.random.default_rng(1)
    sr, x = g2.render_sound(sounds.sample_sound(rng, n_events=1, keys=(("chirp", variant),)), rng)
    half = len(x) // 2
    first, second = spectrum_peak(sr, x[: half // 2]), spectrum_peak(sr, x[-half // 2:])
    assert (second > 2 * first) if variant == "rising" else (first > 2 * second)


@pytest.mark.parametrize("variant", ["slow", "fast"])
def test_clicks_come_at_their_rate(variant):
    rng = np.random.default_rng(2)
    spec = sounds.SoundSpec((sounds.SoundEvent("clicks", variant, 3.0, 0.0),), True, 0)
    sr, x = g2.render_sound(spec, rng)
    loud = np.flatnonzero(np.abs(x) > 0.3 * np.abs(x).max())
    onsets = 1 + np.count_nonzero(np.diff(loud) > 0.02 * sr)  # clicks are a few ms long, 50+ ms apart
    lo, hi = meanings.CLICK_RATE_HZ[variant]
    assert lo * 3 - 2 <= onsets <= hi * 3 + 2


def _imports_second_generator(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if "second_generator" in (node.module or "") or any(a.name == "second_generator" for a in node.names):
                return True
        elif isinstance(node, ast.Import) and any("second_generator" in a.name for a in node.names):
            return True
    return False


def test_training_never_uses_the_second_generator():
    """Only calibrate.py reads it: for ``eval``'s renderers and to set where the audio
    model's world lies (a frame bank and a threshold, no weights); no weight ever sees it."""
    users = sorted(str(p.relative_to(MMDEMO)) for p in MMDEMO.rglob("*.py") if _imports_second_generator(p))
    assert users == ["training/calibrate.py"]
    stages = (MMDEMO / "training" / "tiny_stages.py").read_text() + (MMDEMO / "training" / "tiny_pools.py").read_text()
    assert "calibrate" not in stages and "second_renderers" not in stages
