"""What the bundle trains on beyond the generator's fixed look: varied drawings and
voices that stay inside what each word means, and hard negatives that re-bind words."""

import numpy as np
import pytest
import torch

from mmdemo.toyworld import meanings, scenes, sounds
from mmdemo.training.tiny_losses import contrastive_loss
from mmdemo.training.tiny_pools import rebound, rebound_sound


def _object_width(img: np.ndarray, colour: str) -> int:
    """Columns holding pixels close to the named colour (after jitter and blur)."""
    close = np.abs(img.astype(int) - np.array(scenes.COLOURS[colour])).max(axis=2) < 60
    cols = np.flatnonzero(close.sum(axis=0) >= 2)
    return int(cols.max() - cols.min() + 1) if len(cols) else 0


@pytest.mark.parametrize("size", scenes.SIZES)
def test_varied_circles_stay_within_their_size_word(size):
    lo, hi = meanings.SIZE_DIAMETER[size]
    rng = np.random.default_rng(0)
    widths = []
    for k in range(40):
        scene = scenes.Scene((scenes.SceneObject("circle", "blue", size, 0.5, 0.5),), "plain")
        widths.append(_object_width(scenes.render_scene(scene, 64, rng=rng), "blue"))
    # Anti-aliasing and blur blur the edge by a pixel or two either way.
    assert lo * 64 - 2.5 <= min(widths) and max(widths) <= hi * 64 + 2.5, widths
    assert max(widths) - min(widths) >= 3  # the sizes really vary within the word


def test_varied_looks_are_deterministic_and_the_fixed_look_is_unchanged_by_them():
    scene = scenes.sample_scene(np.random.default_rng(3), n_objects=3)
    a = scenes.render_scene(scene, 64, rng=np.random.default_rng(9))
    b = scenes.render_scene(scene, 64, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    fixed = scenes.render_scene(scene, 64)
    assert np.abs(a.astype(int) - fixed).mean() > 1  # a different drawing...
    np.testing.assert_array_equal(fixed, scenes.render_scene(scene, 64))  # ...and the fixed one is stable


def _peak_dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(np.abs(x).max())


@pytest.mark.parametrize("loud", [True, False])
def test_varied_voices_peak_within_their_loudness_word(loud):
    rng = np.random.default_rng(1)
    lo, hi = meanings.PEAK_DBFS["loud" if loud else "quiet"]
    for _ in range(12):
        spec = sounds.sample_sound(rng, loud=loud)
        assert lo - 0.01 <= _peak_dbfs(sounds.render_sound(spec, rng=rng)) <= hi + 0.01


@pytest.mark.parametrize("pitch", sounds.PITCHES)
def test_varied_tones_sound_within_their_pitch_word(pitch):
    rng = np.random.default_rng(2)
    lo, hi = meanings.PITCH_HZ[pitch]  # (square and sawtooth: capped lower, meanings.pitch_band)
    for wave in sounds.WAVES * 4:
        spec = sounds.SoundSpec((sounds.SoundEvent("tone", f"{pitch} {wave}", 1.0, 0.0),), True, 5)
        x = sounds.render_sound(spec, rng=rng)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        f0 = np.fft.rfftfreq(len(x), 1 / sounds.SAMPLE_RATE)[spectrum.argmax()]
        assert lo - 2 <= f0 <= hi + 2, (wave, f0)
        if wave != "sine":  # its overtones must be audible at 16 kHz: no higher than this
            assert f0 <= meanings.HARMONIC_WAVE_MAX_HZ + 2, (wave, f0)


def test_rebound_scenes_use_the_same_words_bound_differently():
    rng = np.random.default_rng(4)
    for n in (1, 2, 3):
        for _ in range(30):
            scene = scenes.sample_scene(rng, n_objects=n)
            other = rebound(scene, rng)
            assert scenes.caption(other) != scenes.caption(scene)
            assert [(o.x, o.y) for o in other.objects] == [(o.x, o.y) for o in scene.objects]
            if n >= 2 and sorted(scenes.tokenize(scenes.caption(other))) == sorted(scenes.tokenize(scenes.caption(scene))):
                continue  # a swap: every word kept, only the binding differs
            changed = [a != b for a, b in zip(scenes.parse_caption(scenes.caption(other)),
                                              scenes.parse_caption(scenes.caption(scene)))]
            assert sum(changed) == 1  # otherwise exactly one object changed one word


def test_rebound_sounds_change_what_the_description_says():
    rng = np.random.default_rng(5)
    for _ in range(60):
        spec = sounds.sample_sound(rng)
        assert sounds.describe(rebound_sound(spec, rng)) != sounds.describe(spec)


def test_hard_negatives_raise_the_loss_only_when_they_differ_from_the_positive():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    txt = img.clone()  # perfectly aligned pairs
    keys = ["a", "b", "c", "d"]
    base = contrastive_loss(img, txt, torch.tensor(10.0), keys)
    close = torch.nn.functional.normalize(img + 0.05 * torch.randn(4, 8), dim=-1)
    harder = contrastive_loss(img, txt, torch.tensor(10.0), keys, close, ["a*", "b*", "c*", "d*"])
    assert harder > base + 0.1
    # A "negative" with the positive's own key is another positive: the loss pulls the
    # image toward it instead of pushing it away.
    for neg_keys, sign in ((["a*", "b*", "c*", "d*"], 1), (keys, -1)):
        negs = close.clone().requires_grad_(True)
        contrastive_loss(img, txt, torch.tensor(10.0), keys, negs, neg_keys).backward()
        # d loss / d similarity along each row's own image: > 0 pushes away, < 0 pulls in.
        assert (sign * (negs.grad * img).sum(dim=1) > 0).all(), neg_keys


@pytest.mark.parametrize("bands", [meanings.PITCH_HZ, meanings.CLICK_RATE_HZ, meanings.PEAK_DBFS],
                         ids=["pitch", "click rate", "loudness"])
def test_sound_words_split_their_scale_into_bands_that_touch_in_order(bands):
    spans = sorted(bands.values())
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no gap, no overlap
    lo, hi = spans[0][0], spans[-1][1]
    words = [meanings.band_of(bands, v) for v in np.linspace(lo, hi, 200)]
    assert None not in words
    order = [w for w, _ in sorted(bands.items(), key=lambda kv: kv[1])]
    ranks = [order.index(w) for w in words]
    assert ranks == sorted(ranks) and set(words) == set(bands)  # ordinal: never back down the scale
    assert meanings.band_of(bands, lo - 1) is None and meanings.band_of(bands, hi + 1) is None


def test_the_bands_cover_what_listeners_agree_on():
    assert meanings.band_of(meanings.PITCH_HZ, 2640) == "high" and meanings.band_of(meanings.PITCH_HZ, 220) == "low"
    assert meanings.band_of(meanings.PITCH_HZ, 600) == "mid" and meanings.band_of(meanings.PITCH_HZ, 4000) == "high"
    assert meanings.band_of(meanings.PEAK_DBFS, -26) == "quiet" and meanings.band_of(meanings.PEAK_DBFS, -3) == "loud"
    assert meanings.band_of(meanings.CLICK_RATE_HZ, 4.5) == "slow"
    assert meanings.band_of(meanings.CLICK_RATE_HZ, 12) == "fast"


def test_varied_pitches_spread_evenly_in_octaves_over_their_band():
    rng = np.random.default_rng(6)
    lo, hi = meanings.PITCH_HZ["high"]
    draws = np.array([sounds.log_uniform(rng, (lo, hi)) for _ in range(4000)])
    assert lo <= draws.min() and draws.max() <= hi
    middle = np.sqrt(lo * hi)  # as many octaves below as above
    assert abs(np.mean(draws < middle) - 0.5) < 0.03


def _chord_thirds(x: np.ndarray) -> tuple[float, float]:
    """Frequency ratios of the three strongest peaks (root, third, fifth) of a chord."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / sounds.SAMPLE_RATE)
    peaks = []
    for _ in range(3):
        k = int(spectrum.argmax())
        peaks.append(freqs[k])
        spectrum[max(0, k - 20):k + 20] = 0
    root, third, fifth = sorted(peaks)
    return third / root, fifth / root


@pytest.mark.parametrize("quality,third", [("major", (1.25, 1.26)), ("minor", (1.189, 1.2))])
def test_varied_chords_are_just_or_equal_tempered_triads_of_their_quality(quality, third):
    rng = np.random.default_rng(8)
    seen = set()
    for _ in range(12):
        spec = sounds.SoundSpec((sounds.SoundEvent("chord", quality, 2.0, 0.0),), True, 5)
        r3, r5 = _chord_thirds(sounds.render_sound(spec, rng=rng))
        assert third[0] - 0.006 <= r3 <= third[1] + 0.006, r3
        assert 1.495 <= r5 <= 1.503, r5
        seen.add(round(r3, 2))
    assert len(seen) == 2  # both tunings occur
