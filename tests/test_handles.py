"""Every handle kind, loaded through the registry from the built-in catalog (profile
"tiny"), on every device torch reports: it satisfies its protocol in
``mmdemo.handles``, takes numpy/PIL in and hands back numpy on the CPU, of the right
shapes, finite and normalised. A task function never has to know the device. The
CLAP backend (transformers) comes from the test catalog's tiny random CLAP."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmdemo.catalog import load_catalog
from mmdemo.handles import AudioHandle, CaptionerHandle, ClipHandle, FusionHandle
from mmdemo.registry import Registry


def _devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


@pytest.fixture(scope="module", params=_devices())
def reg(request):
    registry = Registry(load_catalog(), device=request.param, profile="tiny")
    assert registry.device == request.param  # no silent fall-back to the CPU here
    return registry


@pytest.fixture(scope="module", params=_devices())
def real_reg(request, test_catalog):
    registry = Registry(load_catalog(test_catalog), device=request.param, profile="real")
    assert registry.device == request.param
    return registry


def _images(n=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


def _on(handle, reg) -> bool:
    return str(handle.device).split(":")[0] == reg.device


def _unit_rows(a: np.ndarray, n: int) -> None:
    assert isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[0] == n and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)


def _probabilities(p: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(p, np.ndarray) and p.shape == shape and np.isfinite(p).all()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


TEXTS = ["a red star", "a blue circle", "two green squares on stripes", "noise"]


def test_clip_handle(reg):
    clip = reg.for_slot("clip")
    assert isinstance(clip, ClipHandle) and _on(clip, reg)
    im, tx = clip.encode_images(_images(), batch_size=2), clip.encode_texts(TEXTS, batch_size=3)
    _unit_rows(im, 3)
    _unit_rows(tx, 4)
    assert im.shape[1] == tx.shape[1] == clip.embed_dim
    pooled, tokens = clip.encode_image_tokens(_images())
    np.testing.assert_allclose(pooled, im, atol=1e-4)
    assert tokens.ndim == 3 and tokens.shape[0] == 3 and np.isfinite(tokens).all()
    t_pooled, t_tokens, mask = clip.encode_text_tokens(TEXTS)
    np.testing.assert_allclose(t_pooled, tx, atol=1e-4)
    assert t_tokens.shape[:2] == mask.shape == (4, clip.context_length) and mask.dtype == bool
    assert mask.any(axis=1).all() and np.isfinite(t_tokens).all()
    _probabilities(clip.zero_shot(im, tx), (3, 4))
    assert clip.truncated(["short", "word " * (clip.context_length + 5)]) == [False, True]
    assert clip.logit_scale > 0 and clip.model_id


def test_captioner_handle(reg):
    from mmdemo.models.decoding import DecodeOptions

    coca = reg.for_slot("captioner")
    assert isinstance(coca, CaptionerHandle) and _on(coca, reg)
    out = coca.generate(_images(2), DecodeOptions(method="beam", num_beams=2, num_return=2, max_length=6))
    assert len(out) == 2 and all(len(c) == 2 and all(isinstance(t, str) and t for t in c) for c in out)
    _unit_rows(coca.encode_images(_images(2)), 2)


def test_audio_handle(reg):
    audio = reg.for_slot("audio")
    assert isinstance(audio, AudioHandle) and _on(audio, reg)
    t = np.arange(int(audio.sample_rate * 1.5)) / audio.sample_rate
    waves = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (220, 880)] + \
        [np.random.default_rng(1).standard_normal(t.size).astype(np.float32) * 0.1]
    emb = audio.encode_waves(waves, batch_size=2)
    _unit_rows(emb, 3)
    texts = audio.encode_texts(TEXTS)
    _unit_rows(texts, 4)
    assert emb.shape[1] == texts.shape[1]
    mel = audio.mel(waves[0])
    assert isinstance(mel, np.ndarray) and mel.ndim == 2 and np.isfinite(mel).all()
    _probabilities(audio.zero_shot(emb, texts), (3, 4))
    # Its text side came from the entry it requires, loaded by the registry.
    assert reg.is_loaded(reg.catalog.entry("tiny-audio").requires["text"])


def test_clap_handle(real_reg, test_catalog):
    clap = real_reg.get("dir-clap")
    assert type(clap.model).__name__ == "ClapModel" and isinstance(clap, AudioHandle) and _on(clap, real_reg)
    assert all(str(p.device).split(":")[0] == real_reg.device for p in clap.model.parameters())
    rng = np.random.default_rng(0)
    # Shorter than the 10 s window, and exactly one, in one batch and across batches.
    waves = [(0.1 * rng.standard_normal(int(clap.sample_rate * s))).astype(np.float32) for s in (0.7, 10.0, 2.5)]
    emb = clap.encode_waves(waves, batch_size=2)
    _unit_rows(emb, 3)
    texts = clap.encode_texts(TEXTS, batch_size=3)
    _unit_rows(texts, 4)
    assert emb.shape[1] == texts.shape[1] == clap.embed_dim
    mel = clap.mel(waves[0])
    assert isinstance(mel, np.ndarray) and mel.dtype == np.float32 and mel.ndim == 2 and np.isfinite(mel).all()
    _probabilities(clap.zero_shot(emb, texts), (3, 4))
    if real_reg.device != "cpu":  # the same numbers as on the CPU (TF32 convolutions allowed for)
        cpu = Registry(load_catalog(test_catalog), device="cpu", profile="real").get("dir-clap")
        np.testing.assert_allclose(emb, cpu.encode_waves(waves), atol=5e-3)
        np.testing.assert_allclose(texts, cpu.encode_texts(TEXTS), atol=1e-3)


def test_every_fusion_head_predicts_from_numpy(reg):
    clip, audio = reg.for_slot("clip"), reg.for_slot("audio")
    n = 3
    img, img_tokens = clip.encode_image_tokens(_images(n))
    feats = {"image": img, "text": clip.encode_texts(TEXTS[:n])}
    t = np.arange(audio.sample_rate) / audio.sample_rate
    feats["audio"] = audio.encode_waves([np.sin(2 * np.pi * 300 * (i + 1) * t).astype(np.float32) for i in range(n)])
    tokens = {"image": img_tokens}
    assert reg.profile.fusion
    said = []
    for name in reg.profile.fusion:
        head = reg.get(name)
        assert isinstance(head, FusionHandle) and _on(head, reg), name
        mine = {m: feats[m] for m in head.modalities}
        probs = head.predict(mine, tokens)
        _probabilities(probs, (n, len(head.labels)))
        explained = head.explain(mine, tokens)
        # (a concat head has nothing to explain: an empty dict)
        assert isinstance(explained, dict), name
        assert all(isinstance(v, (np.ndarray, list)) for v in explained.values()), name
        said += [k for k, v in explained.items() if np.size(v)]
    assert said  # weights, gates or attention from the heads that have them


def test_a_head_loads_without_loading_the_encoders_it_names():
    """A fusion head's ``requires`` records what it was trained on; loading it alone
    (the Models tab's Load) must not pull its encoders in."""
    registry = Registry(load_catalog(), device="cpu", profile="tiny")
    name = registry.profile.fusion[0]
    registry.get(name)
    loaded = {s.name for s in registry.status() if s.state == "loaded"}
    assert loaded == {name}
