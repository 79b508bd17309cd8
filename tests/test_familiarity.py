"""Where a model's world lies: the threshold flags the share of in-world inputs it was
calibrated for, flags inputs far from them, and a broken file never stops a model."""

import logging

import numpy as np

from mmdemo.familiarity import Familiarity, load_beside, path_for
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

    def unfamiliar(self, embs):
        return self.flags[:len(embs)]

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


def test_a_clip_is_unfamiliar_when_most_of_its_windows_are():
    assert clip_notice(_Model([True, True, False]), np.zeros((3, 4)))[0].code == "input_unfamiliar"
    assert clip_notice(_Model([True, False, False]), np.zeros((3, 4))) == []
