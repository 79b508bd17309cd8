"""Fusion heads and zero-shot over encoders in different embedding spaces, as a real
profile has them: a CLIP for image and text (here a 32-d numpy fake) and an audio
model in its own space with its own dimension and logit scale (a 16-d fake CLAP).
The embedded bundle's heads, whose modalities share one space, must predict as before."""

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.errors import MMDemoError
from mmdemo.scores import softmax
from mmdemo.tasks import classify as tasks
from mmdemo.tasks.classify.datasets import Dataset, LabeledExample

SOUNDS = ["hum", "whistle", "siren", "drum"]
RATE, BANDS = 8000, 16
from mmdemo.training.fusion_trainer import TOKEN_HIDDEN  # noqa: E402  (the trainer's width for token heads)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _hashed(text: str, dim: int, salt: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(f"{salt}:{text}".encode())).standard_normal(dim)


class FakeClip:
    """Image and text in one 32-d space; 4x4 patch tokens of width 24."""

    device, embed_dim, context_length, logit_scale = "cpu", 32, 77, 50.0

    def __init__(self, model_id: str):
        self.model_id = model_id
        rng = np.random.default_rng(0)
        self._w, self._tok = rng.standard_normal((32, 8 * 8 * 3)), rng.standard_normal((3, 24))

    def modules(self):
        return []

    @staticmethod
    def _pixels(images, side):
        return np.stack([np.asarray(im.convert("RGB").resize((side, side)), np.float32) / 255 - 0.5 for im in images])

    def encode_image_tokens(self, images, batch_size=64):
        x, patches = self._pixels(images, 8), self._pixels(images, 4)
        return _unit(x.reshape(len(x), -1) @ self._w.T), (patches.reshape(len(x), 16, 3) @ self._tok).astype(np.float32)

    def encode_images(self, images, batch_size=64, progress=None):
        return self.encode_image_tokens(images)[0]

    def encode_texts(self, texts, batch_size=256):
        return _unit(np.stack([_hashed(t, 32, "clip") for t in texts]))

    def encode_text_tokens(self, texts, batch_size=256):
        """Pooled vectors, 6 word tokens of width 8 (a hash of each word), and the mask of real ones."""
        words = [t.split()[:6] for t in texts]
        tokens = np.zeros((len(texts), 6, 8), np.float32)
        mask = np.zeros((len(texts), 6), bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                tokens[i, j], mask[i, j] = _hashed(w, 8, "word"), True
        return self.encode_texts(texts), tokens, mask


class FakeClap:
    """Clips in their own 16-d space: the pooled spectrum, 16 bands of 250 Hz; a text
    naming a sound points at that sound's band."""

    device, sample_rate, window_seconds, logit_scale, embed_dim = "cpu", RATE, 1.0, 7.0, BANDS

    def __init__(self, model_id: str):
        self.model_id = self.space = model_id  # as ClapHandle: its own space
        self.texts_seen: list[str] = []

    def modules(self):
        return []

    def mel(self, wave):
        return np.abs(np.fft.rfft(np.asarray(wave)[:RATE], n=RATE))[:RATE // 2].reshape(BANDS, -1)

    def encode_wave_tokens(self, waves, batch_size=64):
        """Pooled vectors and 4 frame tokens: the 16 band energies of each quarter of the clip."""
        quarter = RATE // 4
        frames = np.stack([np.abs(np.fft.rfft(np.asarray(w)[:RATE].reshape(4, quarter), axis=1))[:, :quarter // 2 // BANDS * BANDS]
                           .reshape(4, BANDS, -1).mean(-1) for w in waves])
        return self.encode_waves(waves), (frames / frames.mean(axis=(1, 2), keepdims=True)).astype(np.float32)

    def encode_waves(self, waves, batch_size=64):
        energy = np.stack([self.mel(w).mean(1) for w in waves])
        return _unit(energy - energy.mean(1, keepdims=True))  # the loud band stands out, as a class would

    def encode_texts(self, texts):
        self.texts_seen += list(texts)
        out = []
        for t in texts:
            v = 0.1 * _hashed(t, BANDS, "clap")
            for k, s in enumerate(SOUNDS):
                if s in t:
                    v[_band(k)] += 1
            out.append(v)
        return _unit(np.stack(out))

    def zero_shot(self, audio_embs, text_embs):
        return softmax(self.logit_scale * audio_embs @ text_embs.T)


def _band(k: int) -> int:
    return 3 * k + 1


def _sound(k: int, rng) -> np.ndarray:
    t = np.arange(RATE) / RATE
    return (np.sin(2 * np.pi * (250 * _band(k) + 125) * t) + 0.5 * rng.standard_normal(RATE)).astype(np.float32)


QUESTIONS = ["what do you hear?", "which sound is this?", "name the sound"]


def _dataset(n: int, seed: int = 0) -> Dataset:
    """The label is which sound plays; the image (one of 5) and the question (one of 3)
    are drawn apart from it, so they tell nothing."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(5)]
    examples = []
    for i in range(n):
        k = i % len(SOUNDS)
        examples.append(LabeledExample(images[rng.integers(5)], QUESTIONS[rng.integers(3)], _sound(k, rng),
                                       SOUNDS[k]))
    return Dataset(examples, list(SOUNDS), ("image", "text", "audio"), "sounds", f"sounds-{n}-{seed}")


CATALOG = """
[models.my-clip]
kind = "clip"
arch = "hf-hub:example/my-clip"

[models.clap-a]
kind = "audio"
backend = "clap"
arch = "hf-hub:example/clap-a"

[models.clap-b]
kind = "audio"
backend = "clap"
arch = "hf-hub:example/clap-b"

[profiles.with-clap-a]
clip = "my-clip"
audio = "clap-a"

[profiles.with-clap-b]
clip = "my-clip"
audio = "clap-b"
"""


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    path.write_text(CATALOG)
    return path


def _registry(catalog_path, profile):
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    return Registry(load_catalog(catalog_path), device="cpu", profile=profile)


@pytest.fixture(scope="module")
def encoders(catalog_path):
    """Fakes named as the catalog's my-clip and clap-a entries, so heads record their ids."""
    catalog = _registry(catalog_path, "with-clap-a").catalog
    return FakeClip(catalog.entry("my-clip").model_id), FakeClap(catalog.entry("clap-a").model_id)


@pytest.fixture(scope="module")
def trained(encoders, tmp_path_factory):
    """Every head kind trained on 240 examples whose answer is the sound."""
    clip, audio = encoders
    cache = tasks.FeatureCache(tmp_path_factory.mktemp("features"))
    ds = _dataset(240)
    report = tasks.train_on_dataset(ds, list(tasks.HEAD_KINDS), clip, audio, epochs=40, cache=cache)
    fs, hit = tasks.dataset_features(ds, clip, audio, cache=cache)
    assert hit
    return report, fs, ds


# --------------------------------------------------------------------------- training


def test_every_head_kind_learns_an_answer_that_depends_on_the_audio(trained):
    report, _, _ = trained
    acc = {r.name: r.accuracy for r in report.leaderboard}
    assert set(acc) == set(tasks.HEAD_KINDS) | {"image only", "text only", "audio only"}
    for kind in tasks.HEAD_KINDS:
        assert acc[kind] >= 0.8, acc  # chance: 0.25
    assert max(acc["image only"], acc["text only"]) < 0.5, acc  # the answer is only in the audio


def test_features_record_each_modality_space_and_dim(trained, encoders):
    _, fs, _ = trained
    clip, audio = encoders
    assert fs.dims == {"image": 32, "text": 32, "audio": 16}
    assert fs.spaces == {"image": clip.model_id, "text": clip.model_id, "audio": audio.model_id}


def test_raw_products_are_built_only_within_one_space(trained, encoders):
    report, _, _ = trained
    clip, audio = encoders
    expected_raw = {"weighted_sum": [], "concat": [], "bilinear": [("image", "text")],
                    "gated": [("image", "text")], "attention": [("image", "text")]}
    # Each kind's MLP input: token heads read the one same-space cosine (image . text), never
    # an image . audio one; the question (text) meets image and audio through learned maps.
    h = TOKEN_HIDDEN
    expected_in = {"bilinear": 2 * (2 * h) + 1,  # max and mean over tokens for image and audio, one cosine
                   "gated": h + 2 * h + 2 + 1,  # fused, two gated summaries, their strongest gates, one cosine
                   "attention": 2 * h + 1,  # one readout per stream (image, audio), one cosine
                   "concat": 32 + 32 + 16}
    for kind, head in report.heads.items():
        cfg = head.config()
        assert cfg["dims"] == {"image": 32, "text": 32, "audio": 16}
        assert cfg["spaces"] == {"image": clip.model_id, "text": clip.model_id, "audio": audio.model_id}
        assert head.raw_pairs == expected_raw[kind], kind
        if kind in expected_in:
            assert head.out[0].in_features == expected_in[kind], kind


def test_one_space_keeps_raw_products_and_other_spaces_or_dims_drop_them():
    from mmdemo.models.fusion import create_head

    def bilinear(dims, spaces):
        return create_head("bilinear", modalities=("a", "b"), dims=dims, spaces=spaces, num_classes=2, hidden=8)
    same = bilinear({"a": 16, "b": 16}, {"a": "s", "b": "s"})
    apart = bilinear({"a": 16, "b": 16}, {"a": "s", "b": "t"})
    unspecified = bilinear({"a": 16, "b": 12}, None)  # one space, but no elementwise product of 16 by 12
    assert same.raw_pairs == [("a", "b")] and apart.raw_pairs == [] and unspecified.raw_pairs == []
    assert same.out[0].in_features == apart.out[0].in_features + 1  # the a . b cosine
    import torch

    x = {"a": torch.randn(3, 16), "b": torch.randn(3, 12)}
    assert unspecified(x).shape == (3, 2)


def test_saved_heads_load_and_predict_the_same(trained, encoders, tmp_path):
    from mmdemo.models.fusion import save_head
    from mmdemo.models.fusion_backend import handle_from_file
    from mmdemo.training.fusion_trainer import predict_proba

    report, fs, _ = trained
    clip, audio = encoders
    feats = {m: t.numpy() for m, t in fs.pooled.items()}
    tokens = {m: t.numpy() for m, t in fs.tokens.items()}
    for kind, head in report.heads.items():
        path = save_head(tmp_path / f"{kind}.safetensors", head, {
            "labels": report.label_names, "modalities": list(report.modalities),
            "encoder": {"clip": clip.model_id, "audio": audio.model_id}})
        handle = handle_from_file(path)
        assert handle.meta["config"] == head.config()
        got = handle.predict(feats, tokens)
        np.testing.assert_allclose(got, predict_proba(head, fs), atol=1e-6, err_msg=kind)
        assert (got.argmax(1) == fs.label_indices()).mean() >= 0.8, kind


def test_the_winner_classifies_one_example_with_its_explanation(trained, encoders, tmp_path):
    report, _, ds = trained
    clip, audio = encoders
    path = tasks.write_head(report, tmp_path / "winner.safetensors", clip, audio)
    from mmdemo.models.fusion_backend import handle_from_file

    handle = handle_from_file(path)
    assert handle.encoder == {"clip": clip.model_id, "audio": audio.model_id}
    ex = ds.examples[2]
    image = tmp_path / "x.png"
    ex.image.save(image)
    res = tasks.classify(handle, str(image), ex.text, (RATE, ex.audio), clip, audio)
    assert res.labels[0]["label"] == ex.label
    audio_drop = next(a for a in res.ablation if a["modality"] == "audio")["top_drop"]
    assert audio_drop > max(a["top_drop"] for a in res.ablation if a["modality"] != "audio")


# --------------------------------------------------------------------------- feature files


def test_feature_files_keep_spaces_and_old_ones_read_as_one_space(trained, encoders, tmp_path):
    from mmdemo.features import FeatureSet, read_features, save_features

    _, fs, ds = trained
    back = read_features(save_features(fs, tmp_path / "new.safetensors"))
    assert back.spaces == fs.spaces and back.dims == fs.dims
    old = FeatureSet(fs.pooled, fs.tokens, fs.labels, fs.label_names)  # as written before spaces existed
    assert read_features(save_features(old, tmp_path / "old.safetensors")).spaces == {}
    # An old cache entry: its key names the encoders, so their spaces are filled in on a hit.
    clip, audio = encoders
    cache = tasks.FeatureCache(tmp_path / "cache")
    cache.put(tasks.features._feature_key(ds.content_hash, ds.modalities, ds.label_names, clip, audio), old)
    hit, from_cache = tasks.dataset_features(ds, clip, audio, cache=tasks.FeatureCache(tmp_path / "cache"))
    assert from_cache and hit.spaces == fs.spaces


# --------------------------------------------------------------------------- encoder checks


def test_a_head_trained_on_one_audio_model_is_refused_under_another(trained, encoders, catalog_path, tmp_path):
    report, fs, _ = trained
    clip, audio = encoders
    path = tasks.write_head(report, tmp_path / "sounds.safetensors", clip, audio)
    other = _registry(catalog_path, "with-clap-b")
    with pytest.raises(MMDemoError, match=r"trained on audio encoder 'clap-a:.*uses clap-b:.*retrain") as err:
        tasks.import_head(path, other, tmp_path / "cache")
    assert err.value.code == "head_encoder_mismatch"
    with pytest.raises(MMDemoError, match="trained on audio encoder 'clap-a:"):
        tasks.resolve_head(other, str(path), allow_paths=True)
    assert not (tmp_path / "cache" / "heads").exists()
    # Under the audio model it was trained on it is taken, and a later switch refuses it again.
    same = _registry(catalog_path, "with-clap-a")
    name = tasks.import_head(path, same, tmp_path / "cache", "sounds")
    handle = tasks.resolve_head(same, name)
    probs = handle.predict({m: t[:4].numpy() for m, t in fs.pooled.items()},
                           {m: t[:4].numpy() for m, t in fs.tokens.items()})
    assert probs.shape == (4, len(SOUNDS))
    tasks.register_saved_heads(other, tmp_path / "cache")
    with pytest.raises(MMDemoError, match="trained on audio encoder 'clap-a:") as err:
        tasks.resolve_head(other, "sounds")
    assert err.value.code == "head_encoder_mismatch"


# --------------------------------------------------------------------------- zero-shot


def test_zero_shot_scores_audio_at_its_own_scale_against_sound_prompts(encoders):
    clip, audio = encoders
    wave = _sound(2, np.random.default_rng(5))
    labels = "\n".join(SOUNDS)
    audio.texts_seen.clear()
    z = tasks.zero_shot(None, None, (RATE, wave), labels, clip, audio, template="a photo of a {}")
    assert z.prompts == [f"a photo of a {s}" for s in SOUNDS]
    assert z.audio_prompts == [f"This is a sound of {s}." for s in SOUNDS] == audio.texts_seen
    cos = audio.encode_waves([wave])[0] @ audio.encode_texts(z.audio_prompts).T
    expected = softmax(audio.logit_scale * cos)
    got = np.array([r["score"] for r in z.per_modality["audio"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, softmax(clip.logit_scale * cos), atol=1e-3)  # not the CLIP's scale
    assert z.labels[0]["label"] == "siren"
    assert {r["label"]: r["score"] for r in z.labels} == pytest.approx(dict(zip(SOUNDS, expected)), abs=1e-6)


def test_zero_shot_adds_each_space_logits_at_its_own_scale(encoders, tmp_path):
    clip, audio = encoders
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    wave = _sound(0, np.random.default_rng(6))
    z = tasks.zero_shot(str(image), "a drum", (RATE, wave), "\n".join(SOUNDS), clip, audio,
                        weights={"image": 1, "text": 1, "audio": 2})
    assert z.weights == {"image": 0.25, "text": 0.25, "audio": 0.5}
    label_emb = clip.encode_texts(z.prompts)
    cos_clip = 0.25 * (clip.encode_images([Image.open(image)])[0] + clip.encode_texts(["a drum"])[0]) @ label_emb.T
    cos_audio = audio.encode_waves([wave])[0] @ audio.encode_texts(z.audio_prompts).T
    expected = softmax(clip.logit_scale * cos_clip + audio.logit_scale * 0.5 * cos_audio)
    got = {r["label"]: r["score"] for r in z.labels}
    assert got == pytest.approx(dict(zip(SOUNDS, expected)), abs=1e-6)


# --------------------------------------------------------------------------- the bundled heads

# The bundle's heads before heads knew about spaces (two of them are kept in tests/data, the
# bundle itself has been rebuilt since), and their predictions on fixed random inputs
# (below), computed by the code of that time (rounded to 4 decimals).
HEADS_BEFORE_SPACES = Path(__file__).parent / "data" / "heads_before_spaces"
BUNDLED_BEFORE = {
    "scene_qa-attention": [[0.6434, 0.3566], [0.5702, 0.4298], [0.5034, 0.4966]],
    "scene_qa-bilinear": [[0.7890, 0.2110], [0.8238, 0.1762], [0.7212, 0.2788]],
    "scene_qa-concat": [[0.4909, 0.5091], [0.5072, 0.4928], [0.5028, 0.4972]],
    "scene_qa-gated": [[0.8729, 0.1271], [0.9998, 0.0002], [0.2127, 0.7873]],
    "scene_qa-weighted_sum": [[0.4903, 0.5097], [0.4937, 0.5063], [0.4899, 0.5101]],
    "scene_sound_match-attention": [[0.0047, 0.0097, 0.3851, 0.6005], [0.0013, 0.0015, 0.6365, 0.3607],
                                    [0.0257, 0.0574, 0.2614, 0.6555]],
    "scene_sound_match-bilinear": [[0.0011, 0.0039, 0.2958, 0.6991], [0.0055, 0.0153, 0.2766, 0.7026],
                                   [0.0032, 0.0117, 0.2399, 0.7452]],
    "scene_sound_match-concat": [[0.2264, 0.1669, 0.3531, 0.2537], [0.0824, 0.0827, 0.3390, 0.4958],
                                 [0.0257, 0.0552, 0.2599, 0.6592]],
    "scene_sound_match-gated": [[0.0036, 0.0016, 0.6141, 0.3807], [0.0003, 0.0007, 0.3501, 0.6489],
                                [0.1450, 0.5193, 0.0819, 0.2538]],
    "scene_sound_match-weighted_sum": [[0.1498, 0.1398, 0.3237, 0.3868], [0.0105, 0.0093, 0.4994, 0.4808],
                                       [0.1064, 0.0971, 0.3456, 0.4509]],
}


def test_heads_saved_before_spaces_predict_as_before():
    from mmdemo.models.fusion_backend import handle_from_file

    rng = np.random.default_rng(12)
    feats = {m: _unit(rng.standard_normal((3, 128)).astype(np.float32)) for m in ("image", "text", "audio")}
    tokens = {"image": rng.standard_normal((3, 64, 128)).astype(np.float32)}
    files = sorted(HEADS_BEFORE_SPACES.glob("*.safetensors"))
    assert [p.stem for p in files] == ["scene_qa-gated", "scene_sound_match-concat"]
    for path in files:
        handle = handle_from_file(path)
        assert "dims" not in handle.meta["config"] and "spaces" not in handle.meta["config"]
        assert handle.head.config() == handle.meta["config"]  # loads into the same config it was saved with
        got = handle.predict({m: feats[m] for m in handle.modalities}, tokens)
        np.testing.assert_allclose(got, BUNDLED_BEFORE[path.stem], atol=6e-5, err_msg=path.stem)


def test_bundled_heads_load_into_the_config_they_were_saved_with():
    from mmdemo.models.fusion_backend import handle_from_file
    from mmdemo.paths import TINY_BUNDLE_DIR

    rng = np.random.default_rng(12)
    feats = {m: _unit(rng.standard_normal((3, 128)).astype(np.float32)) for m in ("image", "text", "audio")}
    tokens = {"image": rng.standard_normal((3, 64, 128)).astype(np.float32)}
    files = sorted(Path(TINY_BUNDLE_DIR, "heads").glob("*.safetensors"))
    assert [p.stem for p in files] == sorted(BUNDLED_BEFORE)  # every kind for both tasks
    for path in files:
        handle = handle_from_file(path)
        assert handle.head.config() == handle.meta["config"]
        got = handle.predict({m: feats[m] for m in handle.modalities}, tokens)
        assert got.shape == (3, len(handle.labels)) and np.allclose(got.sum(axis=1), 1, atol=1e-5)
