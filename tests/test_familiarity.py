"""Where a model's world lies: the threshold flags the share of in-world inputs it was
calibrated for, flags inputs far from them, and a broken file never stops a model."""

import logging

import numpy as np

from mmdemo.familiarity import Familiarity, FrameFamiliarity, load_beside, path_for
from mmdemo.tasks.domain_notices import clip_notice, image_notice, image_tokens_notice, unfamiliar_notice


def _world(n, seed):
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(6, 32))  # the world fills a 6-d subspace
    x = rng.normal(size=(n, 6)) @ basis + 0.05 * rng.normal(size=(n, 32))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_about_one_percent_of_fresh_in_world_inputs_are_flagged_and_outsiders_are():
    fam = Familiarity.fit(_world(3000, 1), _world(3000, 2))
    fresh = np.mean(fam.unfamiliar(_world(5000, 3)))
    assert 0.002 <= fresh <= 0.03, fresh
    rng = np.random.default_rng(4)
    outside = rng.normal(size=(200, 32)).astype(np.float32)
    outside /= np.linalg.norm(outside, axis=1, keepdims=True)
    assert np.mean(fam.unfamiliar(outside)) > 0.95


def test_saved_beside_the_weights_and_loaded_back(tmp_path):
    weights = tmp_path / "tiny-clip.safetensors"
    assert path_for(weights).name == "tiny-clip.familiar.safetensors"
    fam = Familiarity.fit(_world(500, 1), _world(500, 2), model="tiny-clip")
    fam.save(path_for(weights))
    back = load_beside(weights)
    assert back.threshold == fam.threshold and back.meta["model"] == "tiny-clip"
    x = _world(50, 5)
    np.testing.assert_allclose(back.distance(x), fam.distance(x), rtol=1e-6)


def test_no_file_or_a_broken_file_means_no_notices_not_a_broken_model(tmp_path, caplog):
    weights = tmp_path / "m.safetensors"
    assert load_beside(weights) is None and load_beside(None) is None
    path_for(weights).write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING):
        assert load_beside(weights) is None
    assert "unreadable familiarity" in caplog.text


class _Model:
    def __init__(self, flags):
        self.flags = flags

    def unfamiliar_waves(self, waves):
        return self.flags[:len(waves)]

    def unfamiliar_images(self, images):
        return self.flags[:len(images)]

    def unfamiliar_tokens(self, tokens):
        return self.flags[:len(tokens)]


def test_notices_name_one_input_or_count_several():
    (one,) = image_notice(_Model([True]), ["img"])
    assert one.code == "input_unfamiliar" and "This image looks unlike" in one
    (many,) = image_notice(_Model([True, False, True]), ["a", "b", "c"], many="gallery images")
    assert many.startswith("2 of 3 gallery images look unlike")
    assert image_notice(_Model([False]), ["img"]) == []
    assert image_notice(object(), ["img"]) == []  # a model that knows no bounds says nothing
    assert unfamiliar_notice(None, "image") == []
    assert image_tokens_notice(_Model([True]), np.zeros((1, 64, 8)))[0].code == "input_unfamiliar"
    assert image_tokens_notice(object(), np.zeros((1, 64, 8))) == []


def test_a_clip_notice_follows_the_audio_models_judgement_of_the_whole_clip():
    (one,) = clip_notice(_Model([True]), np.zeros(16000, np.float32))
    assert one.code == "input_unfamiliar" and "This clip looks unlike" in one
    assert clip_notice(_Model([False]), np.zeros(16000, np.float32)) == []
    assert clip_notice(object(), np.zeros(16000, np.float32)) == []  # no bounds known: nothing said


def _frames_of(kind, rng, n=60):
    """[T, F] frames: 'tone' frames are one of a few peaked spectra; 'speech' frames smeared ones."""
    base = np.full((n, 16), -12.0, np.float32)
    if kind == "tone":
        bins = rng.integers(2, 14, size=1)
        base[:, bins] = 0.0
        base[:, bins + 1] = -6.0
    else:
        base[:] = rng.uniform(-10, 0, size=(n, 16))
    return base + rng.normal(0, 0.3, size=base.shape).astype(np.float32)


def test_clips_are_judged_by_their_frames_and_a_few_odd_frames_do_not_flag_a_clip(tmp_path):
    rng = np.random.default_rng(0)
    fam = FrameFamiliarity.fit([_frames_of("tone", rng) for _ in range(200)],
                               [_frames_of("tone", rng) for _ in range(200)], model="tiny-audio")
    fresh = np.mean(fam.unfamiliar_clips([_frames_of("tone", rng) for _ in range(400)]))
    assert fresh <= 0.03, fresh
    assert np.mean(fam.unfamiliar_clips([_frames_of("speech", rng) for _ in range(50)])) > 0.95
    clip = _frames_of("tone", rng)
    clip[:5] = _frames_of("speech", rng)[:5]  # an onset click: under a tenth of the frames
    assert fam.unfamiliar_clips([clip]) == [False]
    assert fam.unfamiliar_clips([np.zeros((0, 16), np.float32)]) == [False]  # silence is no evidence
    from mmdemo.models.audio_tower import familiar_frames
    assert familiar_frames(np.zeros(16000, np.float32)).shape[0] == 0
    weights = tmp_path / "tiny-audio.safetensors"
    fam.save(path_for(weights))
    back = load_beside(weights)
    assert isinstance(back, FrameFamiliarity) and back.threshold == fam.threshold
    assert back.meta["model"] == "tiny-audio" and back.bank.dtype == np.float16
