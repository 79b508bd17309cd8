"""Every way a user can point at open_clip weights, loaded offline, and checked
against open_clip's own reference computation."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmdemo.batching import unwrap
from mmdemo.catalog import load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.handles import CaptionerHandle, ClipHandle
from mmdemo.models.open_clip_backend import OpenClipCaptioner, OpenClipHandle
from mmdemo.registry import Registry


@pytest.fixture
def reg(test_catalog, hf_cache):
    return Registry(load_catalog(test_catalog), device="cpu", profile="test")


def images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


TEXTS = ["a red star", "a large blue circle on a striped background", "noise"]


def reference(handle, imgs, texts):
    """open_clip's documented zero-shot recipe, computed directly on the model."""
    m = handle.model
    with torch.no_grad():
        im = m.encode_image(torch.stack([handle.preprocess(i) for i in imgs]))
        tx = m.encode_text(handle.tokenizer(texts))
        im, tx = im / im.norm(dim=-1, keepdim=True), tx / tx.norm(dim=-1, keepdim=True)
        probs = (m.logit_scale.exp() * im @ tx.T).softmax(dim=-1)
    return im.numpy(), tx.numpy(), probs.numpy()


@pytest.mark.parametrize("name", ["file-clip", "pt-clip", "dir-clip", "hub-clip"])
def test_every_weights_form_loads_the_same_weights(reg, tiny_files, name):
    handle = reg.get(name)
    assert isinstance(unwrap(handle), OpenClipHandle) and isinstance(handle, ClipHandle) and not handle.model.training
    assert not isinstance(handle, CaptionerHandle)  # a plain CLIP can't write captions
    sd = handle.model.state_dict()
    for key, value in tiny_files["clip_sd"].items():
        torch.testing.assert_close(sd[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["file-clip", "file-coca"])
def test_embeddings_and_zero_shot_equal_open_clip_reference(reg, name):
    handle = reg.get(name)
    imgs = images()
    ref_im, ref_tx, ref_p = reference(handle, imgs, TEXTS)
    im, tx = handle.encode_images(imgs, batch_size=2), handle.encode_texts(TEXTS, batch_size=2)
    np.testing.assert_allclose(im, ref_im, atol=1e-5)
    np.testing.assert_allclose(tx, ref_tx, atol=1e-5)
    np.testing.assert_allclose(handle.zero_shot(im, tx), ref_p, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(im, axis=1), 1, atol=1e-5)


def test_image_tokens_come_with_the_same_pooled_embedding(reg):
    handle = reg.get("file-clip")
    pooled, tokens = handle.encode_image_tokens(images())
    np.testing.assert_allclose(pooled, handle.encode_images(images()), atol=1e-5)
    assert tokens.shape == (3, 16, 64)  # 32px / patch 8 = 4x4 patches, width 64


def test_random_init_only_when_allowed(reg):
    assert reg.get("rand-clip").encode_texts(["x"]).shape == (1, 32)


def test_captioner_entry_generates_through_the_registry(reg):
    from mmdemo.models.decoding import DecodeOptions

    handle = reg.get("file-coca")
    assert isinstance(unwrap(handle), OpenClipCaptioner) and isinstance(handle, CaptionerHandle)
    out = handle.generate(images(2), DecodeOptions(method="beam", num_beams=2, num_return=2, max_length=5))
    assert len(out) == 2 and all(len(c) == 2 and all(isinstance(t, str) for t in c) for c in out)
    greedy = handle.generate(images(2), DecodeOptions(method="greedy", max_length=5))
    assert greedy == handle.generate(images(2), DecodeOptions(method="greedy", max_length=5))


def test_load_captioner_refuses_a_plain_clip(tiny_files):
    from mmdemo.catalog import EntrySpec
    from mmdemo.models.open_clip_backend import load_captioner

    spec = EntrySpec("c", "captioner", "open_clip", config=tiny_files["clip_cfg"], allow_random=True)
    with pytest.raises(MMDemoError, match="not a CoCa captioner"):
        load_captioner(spec, "cpu")


@pytest.mark.parametrize("name,message", [
    ("corrupt-clip", "Could not load model 'corrupt-clip'"),
    ("missing-clip", "Weights file for 'missing-clip' not found"),
])
def test_broken_weights_fail_clearly_and_others_still_load(reg, name, message):
    with pytest.raises(MMDemoError, match=message):
        reg.get(name)
    assert {s.name: s.state for s in reg.status()}[name] == "failed"
    emb = reg.get("file-clip").encode_texts(TEXTS)  # the good entry still loads and encodes
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_hf_hub_repo_missing_from_offline_cache_is_explained(test_catalog, hf_cache, tmp_path):
    extra = tmp_path / "extra.toml"
    extra.write_text('[models.ghost]\nkind = "clip"\narch = "hf-hub:nobody/ghost"\n')
    reg = Registry(load_catalog(extra), device="cpu")
    with pytest.raises(MMDemoError, match="Could not load model 'ghost' from hf-hub:nobody/ghost"):
        reg.get("ghost")


def test_truncation_is_reported(reg):
    handle = reg.get("file-clip")
    assert handle.truncated(["short", "word " * 40]) == [False, True]


def test_a_bpe_tokenizer_knows_every_word(reg):
    from mmdemo.tasks.text_notices import unknown_words_notice

    handle = reg.get("file-clip")  # open_clip's real BPE tokenizer spells any word
    assert handle.unknown_words(["a golden retriever on a beach"]) == []
    assert unknown_words_notice(handle, ["a golden retriever"]) == []


def test_builtin_pretrained_tag_resolves_from_the_hugging_face_cache(hf_cache):
    """ViT-B-32 + laion2b_s34b_b79k, exactly as the built-in profile names it, with
    random weights placed where open_clip looks for that tag (nothing downloads)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    # fp16 on disk halves the file; open_clip casts into the fp32 model on load.
    sd = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    sha = "fedcba9876543210fedcba9876543210fedcba98"
    repo = hf_cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True, exist_ok=True)
    save_file(sd, repo / "snapshots" / sha / "open_clip_model.safetensors")
    del model
    reg = Registry(load_catalog(), device="cpu", profile="vit-b-32")
    handle = reg.for_slot("clip")
    assert handle.embed_dim == 512
    torch.testing.assert_close(handle.model.state_dict()["text_projection"], sd["text_projection"].float())
    assert handle.encode_texts(["a photo of a cat"]).shape == (1, 512)
