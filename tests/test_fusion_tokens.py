"""Heads that read objects: token heads over patches, words and frames, their plumbing
(the profile's token tower, padding, real-profile widths) and what the app says about a
head's quality (accuracy against chance, a head at chance said in words)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmdemo.errors import MMDemoError

rng = np.random.default_rng(0)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_features(n: int, widths: dict, lengths: dict, classes: int = 2, seed: int = 0, pad_text_to: int = 0):
    from mmdemo.features import FeatureSet

    r = np.random.default_rng(seed)
    pooled = {m: torch.from_numpy(_unit(r.standard_normal((n, d))).astype(np.float32)) for m, d in widths["pooled"].items()}
    tokens = {m: torch.from_numpy(r.standard_normal((n, lengths[m], w)).astype(np.float32))
              for m, w in widths["tokens"].items()}
    if pad_text_to and "text" in tokens:  # words end at different places; the rest is zero padding
        for i in range(n):
            tokens["text"][i, int(r.integers(2, pad_text_to)):] = 0
    labels = torch.from_numpy(np.arange(n) % classes)
    return FeatureSet(pooled, tokens, labels, [f"c{i}" for i in range(classes)],
                      {m: ("clip" if m != "audio" else "clap") for m in pooled})


# Widths of open_clip ViT-B-32 (patch tokens 768 x 50 with a class token, words 512 x 77,
# embeddings 512) and of CLAP HTSAT (a 768 x 8 x 8 map flattened to 64 frames, embeddings 512).
VIT_B_32 = {"pooled": {"image": 512, "text": 512, "audio": 512}, "tokens": {"image": 768, "text": 512, "audio": 768}}
VIT_B_32_LENGTHS = {"image": 50, "text": 77, "audio": 64}


@pytest.mark.parametrize("kind", ["bilinear", "attention", "gated"])
def test_token_heads_train_and_explain_at_real_profile_widths(kind):
    from mmdemo.models.fusion_backend import FusionHandle
    from mmdemo.tasks.classify.apply import _explanation
    from mmdemo.training.fusion_trainer import train_heads

    fs = _random_features(48, VIT_B_32, VIT_B_32_LENGTHS, classes=4, pad_text_to=12)
    (res,) = train_heads(fs, [kind], epochs=2, seed=0)
    cfg = res.head.config()
    assert cfg["reads"] == "tokens" and cfg["token_dims"] == {"image": 768, "text": 512, "audio": 768}
    handle = FusionHandle("h", res.head, {"labels": fs.label_names, "modalities": list(fs.modalities), "config": cfg})
    one = {m: t[:1].numpy() for m, t in fs.pooled.items()}
    toks = {m: t[:1].numpy() for m, t in fs.tokens.items()}
    probs = handle.predict(one, toks)
    assert probs.shape == (1, 4) and np.isclose(probs.sum(), 1, atol=1e-5)
    shown = _explanation(handle.explain(one, toks), fs.modalities)
    if kind == "attention":  # the question's attention over 49 patches (class token dropped) and 64 frames
        assert shown["type"] == "attention" and set(shown["names"]) == {"image", "audio"}
        assert np.asarray(shown["image_grid"]).shape == (7, 7)
    if kind == "gated":
        assert shown["type"] == "gates" and shown["names"] == ["image", "text", "audio"]
        assert np.asarray(shown["image_grid"]).shape == (7, 7)


def test_an_input_left_out_is_padding_not_nan():
    """The ablation zeroes a modality's tokens: every key padded must still give an answer."""
    from mmdemo.models.fusion import create_head

    fs = _random_features(4, VIT_B_32, VIT_B_32_LENGTHS, pad_text_to=10)
    for kind in ("bilinear", "attention", "gated"):
        head = create_head(kind, modalities=fs.modalities, dims=fs.dims, spaces=fs.spaces, num_classes=2,
                           hidden=32, token_dims={m: t.shape[-1] for m, t in fs.tokens.items()}).eval()
        for gone in fs.modalities:
            pooled = {m: (torch.zeros_like(v) if m == gone else v) for m, v in fs.pooled.items()}
            tokens = {m: (torch.zeros_like(v) if m == gone else v) for m, v in fs.tokens.items()}
            with torch.no_grad():
                out = head(pooled, tokens)
            # Finite, and no stand-in of -1000 for "no best token": the ablation stays readable.
            assert torch.isfinite(out).all() and out.abs().max() < 50, (kind, gone)


def test_trailing_padding_does_not_change_the_answer():
    """Texts are padded to the tokenizer's context; how much padding must not matter."""
    from mmdemo.models.fusion import create_head

    fs = _random_features(3, VIT_B_32, VIT_B_32_LENGTHS, pad_text_to=8)
    head = create_head("attention", modalities=fs.modalities, dims=fs.dims, spaces=fs.spaces, num_classes=2,
                       hidden=32, token_dims={m: t.shape[-1] for m, t in fs.tokens.items()}).eval()
    short = dict(fs.tokens, text=fs.tokens["text"][:, :10])
    with torch.no_grad():
        torch.testing.assert_close(head(fs.pooled, fs.tokens), head(fs.pooled, short), atol=1e-5, rtol=1e-4)


def test_head_files_keep_their_design_and_quality():
    from mmdemo.models.fusion import create_head, load_head, save_head

    fs = _random_features(4, VIT_B_32, VIT_B_32_LENGTHS)
    head = create_head("gated", modalities=fs.modalities, dims=fs.dims, spaces=fs.spaces, num_classes=2, hidden=16,
                       token_dims={m: t.shape[-1] for m, t in fs.tokens.items()})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = save_head(Path(d) / "h.safetensors", head,
                         {"labels": ["a", "b"], "modalities": list(fs.modalities),
                          "quality": {"accuracy": 0.91, "chance": 0.5, "best_single": 0.52}})
        back, meta = load_head(path)
    assert type(back).__name__ == "GatedHead" and back.config() == head.config()
    assert meta["quality"]["accuracy"] == 0.91


class _Handle:
    def __init__(self, kind, quality, reads="tokens"):
        self.name, self.kind, self.modalities = f"my-{kind}", kind, ("image", "text")
        self.meta = {"task": "scene_qa", "labels": ["no", "yes"], "quality": quality,
                     "config": {"reads": reads} if reads else {}}


def test_a_head_at_chance_says_so_and_what_to_use_instead():
    from mmdemo.tasks.classify.apply import describe_head, head_notices

    flat = _Handle("concat", {"accuracy": 0.51, "chance": 0.5, "best_single": 0.51}, reads=None)
    card = describe_head(flat)
    assert "at chance" in card and "pooled vector" in card and "attention" in card
    assert [n.code for n in head_notices(flat)] == ["head_at_chance"]
    good = _Handle("attention", {"accuracy": 0.97, "chance": 0.5, "best_single": 0.51})
    card = describe_head(good).lower()
    assert "an attention head" in card and "validation accuracy 0.97" in card and "chance 0.50" in card and "best single modality 0.51" in card
    assert "at chance" not in card and head_notices(good) == []
    # 0.05 above chance is still chance; a 4-way head at 0.29 too.
    assert head_notices(_Handle("gated", {"accuracy": 0.55, "chance": 0.5}))
    assert head_notices(_Handle("gated", {"accuracy": 0.29, "chance": 0.25}))
    assert not head_notices(_Handle("gated", {"accuracy": 0.56, "chance": 0.5}))
    # A pooled kind that learned something still says what it cannot do.
    card = describe_head(_Handle("weighted_sum", {"accuracy": 0.63, "chance": 0.5}, reads=None))
    assert "at chance" not in card and "cannot bind a colour to its shape" in card


def test_profile_tokens_must_name_an_image_model(tmp_path):
    from mmdemo.catalog import load_catalog

    bad = tmp_path / "c.toml"
    bad.write_text('[profiles.p]\nclip = "tiny-clip"\ntokens = "tiny-audio"\n')
    with pytest.raises(MMDemoError, match="tokens = 'tiny-audio' is not an image model"):
        load_catalog(bad)


def test_a_head_reading_another_token_tower_is_refused_under_a_profile_without_it():
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    registry = Registry(load_catalog(), profile="tiny")
    assert registry.profile.tokens == "tiny-coca"
    coca = registry.catalog.entry("tiny-coca").model_id
    clip = registry.catalog.entry("tiny-clip").model_id
    registry.check_fits_profile({"clip": clip, "tokens": coca}, "Head 'x'")  # fits
    with pytest.raises(MMDemoError, match="tokens encoder"):
        registry.check_fits_profile({"clip": clip, "tokens": "something-else"}, "Head 'x'")


def test_a_head_card_comes_from_the_file_header_and_loads_nothing():
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.tasks.classify import describe_head
    from mmdemo.tasks.classify.heads import registry_head_summary

    registry = Registry(load_catalog(), profile="tiny")
    summary = registry_head_summary(registry, "tiny-head-scene_sound_match-attention")
    assert summary.kind == "attention" and summary.modalities == ("image", "text", "audio")
    card = describe_head(summary)
    assert "scene_sound_match" in card and "chance 0.25" in card and "at chance" not in card
    assert "weighted_sum" in describe_head(registry_head_summary(registry, "tiny-head-scene_qa-weighted_sum"))
    assert all(s.state == "not loaded" for s in registry.status())
    with pytest.raises(MMDemoError, match="not a fusion head"):
        registry_head_summary(registry, "tiny-clip")


def test_small_data_heads_start_from_the_encoders_opinion_and_train_on_any_row_count():
    """161 training rows leave a last batch of one; the prior (batch-normed cosines) starts at zero."""
    from mmdemo.models.fusion import create_head
    from mmdemo.training.fusion_trainer import train_heads

    fs = _random_features(202, VIT_B_32, VIT_B_32_LENGTHS, pad_text_to=10)
    fresh = create_head("attention", modalities=fs.modalities, dims=fs.dims, spaces=fs.spaces, num_classes=2,
                        hidden=16, token_dims={m: t.shape[-1] for m, t in fs.tokens.items()}).eval()
    with torch.no_grad():  # zero token readout and zero prior: a new head starts undecided
        assert torch.allclose(fresh(fs.pooled, fs.tokens), torch.zeros(202, 2))
    assert fresh.config()["prior"] is True
    (res,) = train_heads(fs, ["bilinear"], epochs=1, seed=0, split=(np.arange(161), np.arange(161, 202)))
    assert res.history and np.isfinite(res.history[0]["train_loss"])


def test_odd_quality_metadata_in_an_uploaded_file_is_not_believed_and_breaks_nothing():
    from mmdemo.tasks.classify.apply import describe_head, head_notices

    for quality in ("high", {"accuracy": "0.9x", "chance": None}, {"accuracy": 7, "chance": 0.5}, None):
        h = _Handle("attention", quality)
        assert "accuracy not recorded" in describe_head(h).lower() and head_notices(h) == []
