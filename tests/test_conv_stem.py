"""The conv-stem extension of an open_clip config (mmdemo/models/conv_stem.py): a model
whose config asks for it is built with the stem, loads its own weights through the
registry, and embeds as the same model does in training; open_clip never sees the key."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmdemo.catalog import load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.models.conv_stem import CONFIG_KEY, ConvStem, apply_conv_stem, split_config
from mmdemo.registry import Registry

STEM_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 48, "head_width": 24, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    CONFIG_KEY: [8, 16, 24],
}


@pytest.fixture(scope="module")
def stem_model(tmp_path_factory):
    """A random CLIP with a conv stem, trained-state BatchNorm statistics, saved as a file."""
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("stem")
    cfg_path = root / "mmdemo-test-stem-clip.json"
    cfg_path.write_text(json.dumps(STEM_CFG))
    clean, channels = split_config(STEM_CFG)
    plain = root / "plain"
    plain.mkdir()
    (plain / "mmdemo-test-stem-clip-ref.json").write_text(json.dumps(clean))
    open_clip.add_model_config(plain / "mmdemo-test-stem-clip-ref.json")
    torch.manual_seed(0)
    model = apply_conv_stem(open_clip.create_model("mmdemo-test-stem-clip-ref"), channels)
    model.train()
    with torch.no_grad():  # give BatchNorm running statistics that differ from the defaults
        model.encode_image(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    model.eval()
    weights = root / "stem.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    catalog = root / "catalog.toml"
    catalog.write_text(f'[models.stem-clip]\nkind = "clip"\nconfig = "{cfg_path}"\nweights = "{weights}"\n\n'
                       f'[models.stem-clip-hub]\nkind = "clip"\nconfig = "{cfg_path}"\narch = "ViT-B-32"\n'
                       f'pretrained = "laion2b_s34b_b79k"\n')
    return model, catalog


def test_the_stem_replaces_the_patchify_conv_and_keeps_the_token_grid():
    stem = ConvStem([8, 16, 24], 48)
    assert stem(torch.zeros(2, 3, 32, 32)).shape == (2, 48, 4, 4)  # what an 8-px patch conv gives


def test_a_stem_config_loads_through_the_registry_and_embeds_as_trained(stem_model):
    model, catalog = stem_model
    handle = Registry(load_catalog(catalog), device="cpu").get("stem-clip")
    assert isinstance(handle.model.visual.conv1, ConvStem) and not handle.model.training
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    with torch.no_grad():
        want = model.encode_image(torch.stack([handle.preprocess(im) for im in images]))
        want = (want / want.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(handle.encode_images(images), want, atol=1e-5)
    assert handle.encode_texts(["a red star"]).shape == (1, 32)


def test_a_stem_needs_its_weights_from_a_file(stem_model):
    _, catalog = stem_model
    with pytest.raises(MMDemoError, match="only a weights file can fill"):
        Registry(load_catalog(catalog), device="cpu").get("stem-clip-hub")


@pytest.mark.parametrize("channels,words", [([8, 16], "must equal vision_cfg.patch_size"),
                                            ("wide", "list of positive channel counts"),
                                            ([8, 0, 16], "list of positive channel counts")])
def test_a_wrong_stem_is_refused_clearly(channels, words):
    with pytest.raises(MMDemoError, match=words):
        split_config({**STEM_CFG, CONFIG_KEY: channels})


def test_configs_without_the_key_are_open_clips_own():
    cfg = {k: v for k, v in STEM_CFG.items() if k != CONFIG_KEY}
    assert split_config(cfg) == (cfg, None)
