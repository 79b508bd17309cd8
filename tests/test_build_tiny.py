"""The bundle builder end to end, in a few steps: every stage runs and its loss falls."""

import json

import numpy as np
from PIL import Image

from mmdemo.training.build_tiny import SMOKE, BuildOptions, build


def test_smoke_build_runs_every_stage_and_losses_fall(tmp_path):
    report = build(BuildOptions(out=tmp_path, progress=False), **SMOKE)
    for key in ("clip_loss", "joint_audio_loss", "attribute_loss", "audio_loss", "caption_loss"):
        assert report[key]["last"] < report[key]["first"], (key, report[key])
    names = {p.name for p in tmp_path.iterdir()}
    assert {"tokenizer.json", "tiny-clip.safetensors", "tiny-coca.safetensors", "tiny-audio.safetensors",
            "mmdemo-tiny-clip.json", "mmdemo-tiny-coca.json", "build_report.json"} <= names
    heads = sorted(p.name for p in (tmp_path / "heads").iterdir())
    assert len(heads) == 10 and "scene_qa-attention.safetensors" in heads
    assert json.loads((tmp_path / "build_report.json").read_text())["heads"]["scene_qa"].keys() >= {"concat", "gated"}


def test_the_audio_stage_moves_only_the_words_that_only_sounds_use(tmp_path):
    """So every image caption embeds exactly as the CLIP stage left it."""
    from safetensors.torch import load_file

    from mmdemo.hashing import file_hash
    from mmdemo.models.audio_tower import load_audio_tower
    from mmdemo.models.fusion import load_head
    from mmdemo.models.tokenizer import WordTokenizer
    from mmdemo.training.tiny_stages import sound_only_rows

    build(BuildOptions(out=tmp_path, progress=False), **{**SMOKE, "stages": ("clip", "audio", "coca", "heads")})
    before = load_file(str(tmp_path / "tiny-clip.safetensors"))
    report = build(BuildOptions(out=tmp_path, progress=False, stages=("audio",)), **SMOKE)
    after = load_file(str(tmp_path / "tiny-clip.safetensors"))
    assert before.keys() == after.keys()
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert changed == ["token_embedding.weight"]
    rows = (before["token_embedding.weight"] != after["token_embedding.weight"]).any(dim=1).nonzero()[:, 0].tolist()
    tok = WordTokenizer.load(tmp_path / "tokenizer.json")
    assert rows and set(rows) <= set(sound_only_rows(tok)) and report["audio_word_rows_moved"] == len(rows)
    assert {"chord", "minor", "major"} <= {tok.itos[r] for r in sound_only_rows(tok)}
    assert not {"red", "circle", "a", "left"} & {tok.itos[r] for r in sound_only_rows(tok)}
    tower, meta = load_audio_tower(tmp_path / "tiny-audio.safetensors")
    assert tower.reads_pitch and meta["text_encoder"] == "mmdemo-tiny-clip"
    # Heads that hear nothing still read bit-identical features: they are told the new
    # tiny-clip is theirs; heads with audio (whose texts name sounds) must be retrained.
    assert report["heads_restamped"] == [f"scene_qa-{k}.safetensors" for k in
                                         ("attention", "bilinear", "concat", "gated", "weighted_sum")]
    new = file_hash(tmp_path / "tiny-clip.safetensors", 12)
    for path in (tmp_path / "heads").glob("*.safetensors"):
        _, head_meta = load_head(path)
        assert (head_meta["encoder"]["clip"].endswith(new)) == path.name.startswith("scene_qa"), path.name


def test_training_preprocessing_matches_the_app():
    """The builder normalises pixels itself (fast); the app uses open_clip's transform.
    They must agree or the shipped model sees different numbers than it learned on."""
    import open_clip
    import torch

    from mmdemo.toyworld import scenes
    from mmdemo.training.tiny_losses import to_pixels

    preprocess = open_clip.image_transform(64, is_train=False)  # what create_model_and_transforms attaches
    img = scenes.render_scene(scenes.sample_scene(np.random.default_rng(0)), size=64)
    torch.testing.assert_close(to_pixels(img[None])[0], preprocess(Image.fromarray(img)), atol=1e-5, rtol=0)


def test_decoy_batches_keep_images_and_texts_aligned():
    import dataclasses

    from mmdemo.toyworld import scenes
    from mmdemo.training.tiny_pools import Pools

    opts = dataclasses.replace(BuildOptions(progress=False), **SMOKE)
    pools = Pools(opts, np.random.default_rng(0), lambda it, **kw: it)
    idx = np.arange(60)
    images, texts, keys, drawn, negatives = pools.scene_batch(idx)
    assert len(images) == len(texts) == len(keys) == len(drawn) > 60
    assert 0 < len(negatives) < len(drawn)  # a share of the batch (opts.hard_negatives)
    k, pos = 0, 0
    while pos < len(texts):
        np.testing.assert_array_equal(images[pos], pools.images[idx[k]])
        if "background" not in texts[pos]:  # a one-object mention: a decoy follows
            (colour, shape) = texts[pos].removeprefix("is there ").rstrip("?").split()[-2:]
            decoy = scenes.parse_caption(texts[pos + 1])
            assert (colour, shape) not in [(c, s) for _, c, s in decoy]
            assert any(c == colour or s == shape for _, c, s in decoy)
            pos += 1
        pos += 1
        k += 1
    assert k == len(idx)


def test_attribute_probe_targets_name_objects_left_to_right():
    """The training-only probe learns each slot's colour, shape and size in the order
    captions say them; empty slots have their own "no object" class."""
    from mmdemo.toyworld import scenes
    from mmdemo.training.tiny_losses import AttributeProbe

    one = scenes.sample_scene(np.random.default_rng(1), n_objects=1)
    three = scenes.sample_scene(np.random.default_rng(2), n_objects=3)
    t = AttributeProbe.targets([one, three]).numpy()
    assert t.shape == (2, 3, 3)
    none = [len(scenes.COLOURS), len(scenes.SHAPES), len(scenes.SIZES)]
    assert t[0, 1].tolist() == none and t[0, 2].tolist() == none
    names = [(list(scenes.COLOURS)[c], scenes.SHAPES[s], scenes.SIZES[z]) for c, s, z in t[1]]
    assert [(c, s, z) for z, c, s in scenes.parse_caption(scenes.caption(three))] == names
