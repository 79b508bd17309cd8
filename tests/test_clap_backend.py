"""The CLAP audio backend (transformers' ClapModel) behind the registry: equal to
transformers' own computation on the same model, loaded every way users point at
weights (offline), refused clearly otherwise, and as the Audio tab uses it."""

import contextlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmdemo.catalog import EntrySpec, load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.handles import AudioHandle
from mmdemo.models.clap_backend import _fit_truncation, load_clap
from mmdemo.registry import Registry
from mmdemo.tasks.audio import match_audio

SR = 48_000
TEMPLATE = "This is a sound of {}."
LABELS = ["a dog barking", "rain on a roof", "a rising chirp", "white noise"]
# Different lengths, each at most one 10 s window (the extractor crops longer ones at random).
TEXTS = ["a chord", "rain on a roof at night, heavy and steady", "x",
         "a rising chirp, then white noise, then a low hum that slowly fades away"]


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    tone = np.sin(2 * np.pi * (220 + 330 * seed) * t)
    return (0.3 * tone + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


WAVES = [_clip(0.5, 0), _clip(3.7, 1), _clip(10.0, 2), _clip(1.2, 3)]  # 10.0 s: exactly a window


@pytest.fixture(scope="module")
def reg(test_catalog):
    return Registry(load_catalog(test_catalog), device="cpu", profile="real")


@pytest.fixture(scope="module")
def clap(reg):
    return reg.get("dir-clap")


@pytest.fixture(scope="module")
def ref(tiny_files):
    """The same folder, loaded by transformers directly: (model, processor)."""
    from transformers import ClapModel, ClapProcessor

    folder = str(tiny_files["clap_dir"])
    return ClapModel.from_pretrained(folder).eval(), ClapProcessor.from_pretrained(folder)


def _ref_audio(ref, waves) -> np.ndarray:
    model, processor = ref
    with torch.no_grad():
        inputs = processor.feature_extractor(list(waves), sampling_rate=SR, return_tensors="pt")
        return model.get_audio_features(**inputs).pooler_output.numpy()


def _ref_text(ref, texts) -> np.ndarray:
    model, processor = ref
    with torch.no_grad():
        return model.get_text_features(**processor.tokenizer(list(texts), padding=True,
                                                             return_tensors="pt")).pooler_output.numpy()


def _distinct_rows(a: np.ndarray) -> None:
    """Rows that differ by far more than the tolerance: equal results on equal vectors
    would prove nothing (the random model's rows are close, cosine ~0.999)."""
    gaps = np.abs(a[:, None] - a[None]).max(axis=-1)
    assert (gaps[~np.eye(len(a), dtype=bool)] > 1e-3).all(), gaps


@contextlib.contextmanager
def _logit_scale(model, scale: float):
    old = model.logit_scale_a.detach().clone()
    with torch.no_grad():
        model.logit_scale_a.fill_(math.log(scale))
    try:
        yield
    finally:
        with torch.no_grad():
            model.logit_scale_a.copy_(old)


def _extra_catalog(tmp_path: Path, body: str) -> Registry:
    path = tmp_path / "extra.toml"
    path.write_text(body)
    return Registry(load_catalog(path), device="cpu")


# --------------------------------------------------------------------------- equivalence


def test_audio_embeddings_equal_transformers_batched_and_one_at_a_time(clap, ref):
    want = _ref_audio(ref, WAVES)  # one batch of mixed lengths
    _distinct_rows(want)
    np.testing.assert_allclose(clap.encode_waves(WAVES), want, atol=1e-5)
    np.testing.assert_allclose(clap.encode_waves(WAVES, batch_size=1), want, atol=1e-5)
    np.testing.assert_allclose(clap.encode_waves(WAVES, batch_size=3), want, atol=1e-5)
    one_by_one = np.concatenate([_ref_audio(ref, [w]) for w in WAVES])
    np.testing.assert_allclose(one_by_one, want, atol=1e-5)
    assert clap.encode_waves(WAVES).dtype == np.float32


def test_text_embeddings_equal_transformers_batched_and_one_at_a_time(clap, ref):
    want = _ref_text(ref, TEXTS)  # padded to the longest
    _distinct_rows(want)
    np.testing.assert_allclose(clap.encode_texts(TEXTS), want, atol=1e-5)
    np.testing.assert_allclose(clap.encode_texts(TEXTS, batch_size=1), want, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([_ref_text(ref, [t]) for t in TEXTS]), want, atol=1e-5)


# The random model's cosines differ by ~0.01: at its own scale (1/0.07) the probabilities
# are close to uniform, so the test also runs at 100 on both models, where a wrong scale,
# template, normalisation or label order shows far above the tolerance.
@pytest.mark.parametrize("scale,spread", [(None, 2e-3), (100.0, 0.05)])
def test_zero_shot_equals_the_transformers_pipeline(clap, ref, scale, spread):
    from transformers import pipeline

    model, processor = ref
    wave = WAVES[1]  # 3.7 s: one window
    scaled = (_logit_scale(clap.model, scale), _logit_scale(model, scale)) if scale else ()
    with contextlib.ExitStack() as stack:
        for ctx in scaled:
            stack.enter_context(ctx)
        pipe = pipeline("zero-shot-audio-classification", model=model, feature_extractor=processor.feature_extractor,
                        tokenizer=processor.tokenizer, device="cpu")
        by_label = {d["label"]: d["score"] for d in pipe(wave, candidate_labels=LABELS, hypothesis_template=TEMPLATE)}
        want = np.array([by_label[label] for label in LABELS])
        assert want.max() - want.min() > spread, want

        texts = clap.encode_texts([TEMPLATE.format(label) for label in LABELS])
        np.testing.assert_allclose(clap.zero_shot(clap.encode_waves([wave]), texts)[0], want, atol=1e-5)

        match = match_audio((SR, wave), LABELS, clap, templates=TEMPLATE)
        got = {d["label"]: d["score"] for d in match.labels}
        np.testing.assert_allclose([got[label] for label in LABELS], want, atol=1e-5)
        assert [d["label"] for d in match.labels] == sorted(LABELS, key=lambda k: -by_label[k])


# --------------------------------------------------------------------------- loading


def test_hf_hub_from_the_offline_cache_loads_the_same_weights_as_local_dir(test_catalog, hf_cache, clap, ref):
    from huggingface_hub import constants

    assert constants.is_offline_mode()  # nothing may download
    reg = Registry(load_catalog(test_catalog), device="cpu", profile="real")
    hub = reg.for_slot("audio")  # the real profile's CLAP: hub-clap
    assert type(hub.model).__name__ == "ClapModel" and isinstance(hub, AudioHandle) and not hub.model.training
    row = {s.name: s for s in reg.status()}["hub-clap"]
    assert row.state == "loaded" and row.source == "hf-hub:mmdemo-test/tiny-clap" and row.parameters > 0
    sd = hub.model.state_dict()
    for key, value in ref[0].state_dict().items():
        torch.testing.assert_close(sd[key], value, rtol=0, atol=0)
    np.testing.assert_allclose(hub.encode_waves(WAVES[:2]), clap.encode_waves(WAVES[:2]), atol=1e-6)
    assert hub.model_id != clap.model_id  # named by where they come from: caches keyed on it stay apart


@pytest.mark.parametrize("line,where", [
    ('weights = "{dir}/model.safetensors"', "file:"),
    ('pretrained = "laion2b_s34b_b79k"', "tag:laion2b_s34b_b79k"),
])
def test_sources_clap_cannot_take_are_refused(tmp_path, tiny_files, line, where):
    reg = _extra_catalog(tmp_path, '[models.odd-clap]\nkind = "audio"\nbackend = "clap"\n'
                         + line.format(dir=tiny_files["clap_dir"]) + "\n")
    with pytest.raises(MMDemoError) as err:
        reg.get("odd-clap")
    assert err.value.code == "weights_unsupported"
    assert "'odd-clap'" in str(err.value) and where in str(err.value) and "hf-hub, local-dir" in str(err.value)


@pytest.mark.parametrize("name,code,message", [
    ("missing-clap", "weights_not_found", r"CLAP folder for 'missing-clap' not found: .*no-such-clap"),
    ("corrupt-clap", "model_load_failed", r"Could not load CLAP model 'corrupt-clap' from local-dir:.*corrupt-clap"),
])
def test_broken_clap_fails_clearly_and_others_still_work(test_catalog, name, code, message):
    reg = Registry(load_catalog(test_catalog), device="cpu", profile="real")
    with pytest.raises(MMDemoError, match=message) as err:
        reg.get(name)
    assert err.value.code == code
    row = {s.name: s for s in reg.status()}[name]
    assert row.state == "failed" and row.error == str(err.value)
    with pytest.raises(MMDemoError, match=message):  # asked again: the same answer, not a hang
        reg.get(name)
    emb = reg.get("file-clip").encode_texts(TEXTS)
    assert emb.shape == (4, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert reg.get("dir-clap").encode_waves(WAVES[:1]).shape == (1, 16)


def test_hf_hub_repo_absent_from_the_offline_cache_is_explained(tmp_path, hf_cache):
    reg = _extra_catalog(tmp_path, '[models.ghost-clap]\nkind = "audio"\nbackend = "clap"\n'
                                   'arch = "hf-hub:nobody/ghost-clap"\n')
    with pytest.raises(MMDemoError, match=r"'ghost-clap' from hf-hub:nobody/ghost-clap: it is not in the Hugging "
                                          r"Face cache and HF_HUB_OFFLINE is set") as err:
        reg.get("ghost-clap")
    assert err.value.code == "weights_not_found"


def test_a_relative_local_dir_that_is_missing_never_reaches_the_hub(tmp_path):
    """transformers would read "models/clap" as a hub repo id and try to download it."""
    with pytest.raises(MMDemoError, match="CLAP folder for 'typo' not found: models/clap"):
        load_clap(EntrySpec("typo", "audio", "clap", arch="local-dir:models/clap"), "cpu")


# --------------------------------------------------------------------------- as the Audio tab uses it


def test_the_handle_reports_what_the_audio_tab_reads(reg, clap, ref):
    assert isinstance(clap, AudioHandle) and clap.device == "cpu" and not clap.model.training
    assert clap.sample_rate == 48_000 and clap.window_seconds == 10.0
    assert clap.logit_scale == pytest.approx(ref[0].logit_scale_a.detach().exp().item(), rel=1e-6)
    assert clap.space == clap.model_id == reg.catalog.entry("dir-clap").model_id
    mel = clap.mel(WAVES[1])
    assert isinstance(mel, np.ndarray) and mel.dtype == np.float32
    assert mel.shape == (64, 1001)  # [n_mels, frames]: 10 s at hop 480
    features = ref[1].feature_extractor([WAVES[1]], sampling_rate=SR, return_tensors="np")["input_features"]
    np.testing.assert_allclose(mel, features[0, 0].T, atol=1e-5)


def test_a_long_clip_is_resampled_once_and_scored_over_windows_that_cover_it(clap, monkeypatch):
    import soxr

    calls = []
    resample = soxr.resample

    def counting(wave, sr_in, sr_out, *args, **kwargs):
        calls.append((sr_in, sr_out))
        return resample(wave, sr_in, sr_out, *args, **kwargs)

    monkeypatch.setattr(soxr, "resample", counting)
    sr = 16_000
    t = np.arange(25 * sr) / sr
    wave = (0.05 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wave[18 * sr:21 * sr] += (0.5 * np.random.default_rng(0).standard_normal(3 * sr)).astype(np.float32)
    match = match_audio((sr, wave), LABELS, clap, templates=TEMPLATE)

    assert calls == [(16_000, 48_000)]
    assert (match.original_sample_rate, match.sample_rate) == (16_000, 48_000)
    assert len(match.wave) == 25 * 48_000 and match.duration == pytest.approx(25.0)
    starts = [a for a, _ in match.windows]
    assert match.windows[0][0] == 0 and match.windows[-1][1] == pytest.approx(25.0)
    assert all(b - a == pytest.approx(10.0) for a, b in match.windows)
    assert all(0 < s2 - s1 <= 10.0 for s1, s2 in zip(starts, starts[1:]))  # no gap between windows
    assert match.similarity.shape == (len(match.windows), len(LABELS))
    assert np.ptp(match.similarity, axis=0).max() > 1e-4  # windows differ: the best one means something
    for best in match.best:
        column = match.similarity[:, LABELS.index(best["label"])]
        w = int(column.argmax())
        assert best["similarity"] == pytest.approx(float(column[w]), abs=1e-6)
        assert (best["start"], best["end"]) == pytest.approx(match.windows[w], abs=1e-3)
    assert match.mel.shape == (64, 1001) and match.window_seconds == 10.0


def test_empty_audio_is_refused_clearly(clap):
    for waves in ([], [WAVES[0], np.zeros(0, np.float32)]):
        with pytest.raises(MMDemoError) as err:
            clap.encode_waves(waves)
        assert err.value.code == "audio_empty"
    with pytest.raises(MMDemoError, match="contains no samples"):
        match_audio((SR, np.zeros(0, np.float32)), LABELS, clap)
    assert clap.encode_texts([]).shape == (0, 16)


def test_texts_longer_than_the_text_model_takes_are_cut(clap):
    long = "a dog barking in the rain " * 60  # ~360 tokens; the tiny model takes 64
    base, more = clap.encode_texts([long, long + "and a chord " * 20])
    np.testing.assert_allclose(base, more, atol=1e-6)  # the tail past the limit is cut off
    assert not np.allclose(base, clap.encode_texts(["a dog barking in the rain"])[0], atol=1e-3)


def test_a_tokenizer_without_a_length_limit_still_cuts_at_the_position_table(tiny_files, tmp_path, ref):
    folder = tmp_path / "clap"
    shutil.copytree(tiny_files["clap_dir"], folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["model_max_length"]  # what some saved tokenizers lack: transformers then says 10**30
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    handle = load_clap(EntrySpec("nolimit", "audio", "clap", arch=f"local-dir:{folder}"), "cpu")
    assert handle.tokenizer.model_max_length > 10**6
    long = "a dog barking in the rain " * 60
    with pytest.raises((IndexError, RuntimeError)):  # why the handle bounds texts itself
        handle.model.get_text_features(**handle.tokenizer([long], truncation=True, return_tensors="pt"))
    emb = handle.encode_texts([long])
    assert emb.shape == (1, 16) and np.isfinite(emb).all()
    # 70 positions, RoBERTa's start after the padding id 1: 68 tokens
    assert handle.max_text_tokens == ref[0].config.text_config.max_position_embeddings - 2


# --------------------------------------------------------------------------- _fit_truncation


def test_a_fusion_preprocessor_beside_an_unfused_model_is_switched_to_rand_trunc(tiny_files, tmp_path, clap):
    from transformers import ClapModel, ClapProcessor

    folder = tmp_path / "clap"
    shutil.copytree(tiny_files["clap_dir"], folder)
    config = json.loads((folder / "processor_config.json").read_text())
    config["feature_extractor"]["truncation"] = "fusion"  # transformers' default, for fused CLAPs
    (folder / "processor_config.json").write_text(json.dumps(config))

    processor, model = ClapProcessor.from_pretrained(str(folder)), ClapModel.from_pretrained(str(folder))
    assert not model.config.audio_config.enable_fusion
    inputs = processor.feature_extractor([WAVES[1]], sampling_rate=SR, return_tensors="pt")
    assert inputs["input_features"].shape[1] == 4  # four mel copies, for a fused model only
    with pytest.raises(RuntimeError, match="channels"), torch.no_grad():
        model.get_audio_features(**inputs)

    handle = load_clap(EntrySpec("fusion-cfg", "audio", "clap", arch=f"local-dir:{folder}"), "cpu")
    assert handle.feature_extractor.truncation == "rand_trunc"
    np.testing.assert_allclose(handle.encode_waves(WAVES[:2]), clap.encode_waves(WAVES[:2]), atol=1e-6)


def test_a_fused_model_keeps_its_fusion_truncation():
    extractor = SimpleNamespace(truncation="fusion")
    _fit_truncation(SimpleNamespace(config=SimpleNamespace(audio_config=SimpleNamespace(enable_fusion=True))),
                    extractor)
    assert extractor.truncation == "fusion"


# --------------------------------------------------------------------------- start-up stays light


def test_import_and_building_the_app_on_real_profiles_import_no_transformers(test_catalog, tmp_path):
    code = (
        "import sys\n"
        "import mmdemo\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "from mmdemo.settings import Settings\n"
        "from mmdemo.ui.app import build_demo\n"
        # The test profile of random real backends, and the two built-in real profiles as users run them.
        f"for profile in ('real', 'vit-b-32', 'vit-l-14'):\n"
        f"    build_demo(Settings(profile=profile, catalog={str(test_catalog)!r}, device='cpu', "
        f"cache_dir={str(tmp_path)!r}))\n"
        "heavy = sorted(m for m in ('transformers', 'open_clip') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_clip_longer_than_the_window_embeds_the_same_every_time(clap):
    """Classify hands whole clips (up to 30 s) to encode_waves: CLAP's extractor would crop
    them at a random offset, so the same clip scored differently on every click."""
    wave = _clip(25.0, seed=11)
    first, again = clap.encode_waves([wave]), clap.encode_waves([wave])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, clap.encode_waves([wave[: 10 * 48000]]), atol=1e-6)  # its first window
    assert np.abs(first - clap.encode_waves([wave[-10 * 48000:]])).max() > 1e-4  # not just any window


def test_big_batches_are_capped_and_give_the_same_embeddings(clap):
    waves = [_clip(1.0 + 0.1 * i, seed=i) for i in range(20)]
    np.testing.assert_allclose(clap.encode_waves(waves, batch_size=128), clap.encode_waves(waves, batch_size=1),
                               atol=1e-5)


def test_a_half_precision_checkpoint_loads_in_float32_and_works(tiny_files, tmp_path):
    from transformers import ClapModel, ClapProcessor

    folder = tmp_path / "fp16-clap"
    ClapModel.from_pretrained(str(tiny_files["clap_dir"])).half().save_pretrained(str(folder))
    ClapProcessor.from_pretrained(str(tiny_files["clap_dir"])).save_pretrained(str(folder))
    handle = _extra_catalog(tmp_path, f'[models.half-clap]\nkind = "audio"\nbackend = "clap"\n'
                                      f'arch = "local-dir:{folder}"\n').get("half-clap")
    assert {p.dtype for p in handle.model.parameters()} == {torch.float32}
    emb = handle.encode_waves([_clip(2.0, seed=3)])
    assert emb.dtype == np.float32 and np.isfinite(emb).all()
