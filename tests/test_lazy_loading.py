"""On a real profile a model's first load is a download: a request loads only the models
it needs, and only once its inputs have been read (the UI hands tasks lazy handles)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mmdemo.catalog import load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.registry import Registry
from mmdemo.tasks.audio import match_audio
from mmdemo.tasks.classify import TrainingJob, zero_shot


@pytest.fixture
def real(test_catalog, hf_cache):
    """A fresh registry on the `real` test profile: nothing loaded yet."""
    return Registry(load_catalog(test_catalog), device="cpu", profile="real")


def loaded(registry) -> set[str]:
    return {s.name for s in registry.status() if s.state == "loaded"}


def test_training_on_data_without_audio_never_loads_the_audio_model(real, tmp_path):
    job = TrainingJob.from_generated(real, "scene_qa", 120, ["concat"], epochs=1, lr=1e-3, baselines=False,
                                     save_as=None, cache_dir=tmp_path)
    job.start()
    assert job.result().modalities == ("image", "text")
    assert loaded(real) == {"dir-clip"}


def test_audio_only_zero_shot_on_clap_never_loads_the_clip(real):
    wave = np.random.default_rng(0).normal(0, 0.1, 48000 * 2).astype(np.float32)
    z = zero_shot(None, None, (48000, wave), "a dog\na bell", real.for_slot("clip", lazy=True),
                  real.for_slot("audio", lazy=True))
    assert sorted(z.per_modality) == ["audio"] and abs(sum(r["score"] for r in z.labels) - 1) < 1e-5
    assert loaded(real) == {"hub-clap"}


def test_a_broken_upload_is_refused_before_the_audio_model_loads(real, tmp_path):
    broken = tmp_path / "broken.wav"
    sf.write(broken, np.zeros(16000, np.float32), 16000)
    broken.write_bytes(broken.read_bytes()[:30])  # a header cut short
    with pytest.raises(MMDemoError):
        match_audio(str(broken), "a dog\na bell", real.for_slot("audio", lazy=True))
    assert loaded(real) == set()
