"""Side by side (mmdemo.tasks.compare): one image through several models, one example
through every fusion head, on the tiny bundle plus the test catalog's random entries."""

import math

import pytest

from mmdemo.errors import MMDemoError
from mmdemo.tasks.compare import (MAX_COMPARE_TEXTS, MAX_MODELS, RegistryHeads, compare_heads,
                                  compare_models)


@pytest.fixture(scope="module")
def registry(test_catalog):
    """The tiny profile, with the test catalog's random, corrupt and CLAP entries beside it."""
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    return Registry(load_catalog(test_catalog), device="cpu", profile="tiny")


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from mmdemo.tasks.classify import generated_examples

    return generated_examples(tmp_path_factory.mktemp("examples"))


def _scene(examples):
    return next(e for e in examples if e["task"] == "scene_qa")


def _present(example) -> list[str]:
    return list(example["objects"])  # "colour shape" of each object drawn


def test_two_models_rank_the_same_candidates_side_by_side(registry, examples):
    scene = _scene(examples)
    res = compare_models(registry, ["tiny-clip", "file-clip"], scene["image"], "\n".join(scene["zero_shot_labels"]))
    assert [r["model"] for r in res.rows] == ["tiny-clip", "file-clip"]
    assert res.texts == scene["zero_shot_labels"]
    for row in res.rows:
        assert row["ok"] and row["error"] is None
        assert list(row["scores"]) == res.texts  # one score per candidate, in the order typed
        assert math.isclose(sum(row["scores"].values()), 1.0, abs_tol=1e-4)
        assert row["answer"] == max(row["scores"], key=row["scores"].get)
        assert row["seconds"] is not None
    tiny, rand = res.rows
    # The trained model names an object of the scene; the random one scores differently.
    assert tiny["answer"] in _present(scene), (tiny["answer"], scene)
    assert tiny["scores"] != rand["scores"]
    assert res.to_dict()["rows"][0]["scores"] == tiny["scores"]


def test_every_example_scene_tiny_clip_beats_a_random_clip(registry, examples):
    """Side by side makes a trained model visible beside an untrained one: over the
    generated scenes, the tiny CLIP puts more mass on the scene's own objects."""
    hits = {"tiny-clip": 0.0, "rand-clip": 0.0}
    scenes = [e for e in examples if e["task"] == "scene_qa"]
    for scene in scenes:
        res = compare_models(registry, list(hits), scene["image"], scene["zero_shot_labels"])
        for row in res.rows:
            hits[row["model"]] += sum(row["scores"][t] for t in _present(scene))
    assert hits["tiny-clip"] > hits["rand-clip"], hits


def test_captioners_caption_side_by_side_and_a_clip_says_it_cannot(registry, examples):
    scene = _scene(examples)
    res = compare_models(registry, ["tiny-coca", "tiny-clip", "file-coca"], scene["image"], mode="caption")
    coca, clip, rand = res.rows
    assert coca["ok"] and coca["answer"] and coca["captions"][0] == coca["answer"]
    assert coca["answer"].startswith("a ") and any(p.split()[-1] in coca["answer"] for p in _present(scene))
    assert rand["ok"] and rand["model"] == "file-coca"
    assert not clip["ok"] and "writes no captions" in clip["error"] and clip["kind"] == "clip"
    assert "could not answer" in res.summary()


def test_a_model_that_fails_is_one_row_and_the_others_still_answer(registry, examples):
    scene = _scene(examples)
    res = compare_models(registry, ["corrupt-clip", "tiny-clip", "dir-clap", "no-such-model"], scene["image"],
                         scene["zero_shot_labels"])
    rows = {r["model"]: r for r in res.rows}
    assert list(rows) == ["corrupt-clip", "tiny-clip", "dir-clap", "no-such-model"]
    assert rows["tiny-clip"]["ok"] and math.isclose(sum(rows["tiny-clip"]["scores"].values()), 1, abs_tol=1e-4)
    assert not rows["corrupt-clip"]["ok"] and "Could not load model 'corrupt-clip'" in rows["corrupt-clip"]["error"]
    assert not rows["dir-clap"]["ok"] and "not a CLIP model" in rows["dir-clap"]["error"]
    assert not registry.is_loaded("dir-clap")  # the wrong kind is refused before loading
    unknown = rows["no-such-model"]["error"]
    assert "No model named 'no-such-model'" in unknown and "tiny-clip" in unknown and "tiny-head" not in unknown
    assert all(r["scores"] == {} and r["answer"] is None for r in res.rows if not r["ok"])
    assert res.summary().endswith("3 of 4 could not answer (see their rows).")


@pytest.mark.parametrize("names, image, texts, code", [
    (["tiny-clip"], "scene", "a red circle\na blue star", "compare_too_few_models"),
    (["tiny-clip", " tiny-clip "], "scene", "a red circle", "compare_too_few_models"),  # one model, twice
    ([], "scene", "a red circle", "compare_too_few_models"),
    (["tiny-clip", "tiny-coca", "file-clip", "pt-clip", "rand-clip"], "scene", "a", "compare_too_many_models"),
    (["tiny-clip", "file-clip"], None, "a red circle", "image_missing"),
    (["tiny-clip", "file-clip"], "scene", "", "compare_texts_missing"),
    (["tiny-clip", "file-clip"], "scene", " \n \n", "compare_texts_missing"),
    (["tiny-clip", "file-clip"], "scene", "\n".join(f"text {i}" for i in range(MAX_COMPARE_TEXTS + 1)),
     "compare_too_many_texts"),
    (["tiny-clip", "file-clip"], "corrupt", "a red circle", None),  # the media loader's own code
])
def test_bad_input_is_refused_in_words_before_any_model_loads(test_catalog, examples, tmp_path, names, image, texts,
                                                              code):
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    fresh = Registry(load_catalog(test_catalog), device="cpu", profile="tiny")
    if image == "corrupt":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
        image = str(tmp_path / "bad.png")
    elif image == "scene":
        image = _scene(examples)["image"]
    with pytest.raises(MMDemoError) as err:
        compare_models(fresh, names, image, texts)
    if code:
        assert err.value.code == code
    assert str(err.value)[0].isupper() and "Traceback" not in str(err.value)
    assert not any(fresh.is_loaded(n) for n in fresh.names())
    if code == "compare_too_many_models":
        assert f"at most {MAX_MODELS} models" in str(err.value)


def test_unknown_mode_is_refused(registry, examples):
    with pytest.raises(MMDemoError, match="Unknown comparison mode 'vote'"):
        compare_models(registry, ["tiny-clip", "tiny-coca"], _scene(examples)["image"], "a", mode="vote")


# --------------------------------------------------------------------------- heads


@pytest.fixture(scope="module")
def encoders(registry):
    return registry.for_slot("clip"), registry.for_slot("audio")


def test_every_head_answers_an_image_and_text_and_audio_heads_say_what_they_need(registry, examples, encoders):
    clip, _ = encoders
    scene = _scene(examples)
    res = compare_heads(RegistryHeads(registry), scene["image"], scene["text"], None, clip,
                        token_tower=registry.for_slot("tokens", lazy=True))
    heads = registry.names(kind="fusion")
    assert [r["head"] for r in res.rows] == heads and res.modalities == ["image", "text"]
    ran = [r for r in res.rows if r["ok"]]
    skipped = [r for r in res.rows if not r["ok"]]
    assert {r["head"] for r in ran} == {h for h in heads if "scene_qa" in h}
    for r in ran:
        assert r["prediction"] in ("yes", "no") and 0.5 <= r["probability"] <= 1
        assert set(r["contributions"]) == {"image", "text"}
        assert all(-1 <= v <= 1 for v in r["contributions"].values())
        assert r["task"] == "scene_qa" and r["explanation"]["type"] in ("modality_weights", "gates", "attention",
                                                                        "none")
    for r in skipped:
        assert "needs image + text + audio" in r["error"] and "add the audio" in r["error"]


def test_side_by_side_heads_give_the_classify_tab_answers_from_one_encoding(registry, examples, encoders):
    from mmdemo.tasks.classify import classify

    clip, audio = encoders
    ex = next(e for e in examples if e["task"] == "scene_sound_match")
    calls = {"image": 0, "text": 0, "audio": 0}

    class Counting:
        def __init__(self, inner, method, key):
            self._inner, self._method, self._key = inner, method, key

        def __getattr__(self, attr):
            value = getattr(self._inner, attr)
            if attr in self._method:
                def counted(*a, **k):
                    calls[self._key[attr]] += 1
                    return value(*a, **k)
                return counted
            return value

    counted_clip = Counting(clip, ("encode_image_tokens", "encode_text_tokens"),
                            {"encode_image_tokens": "image", "encode_text_tokens": "text"})
    counted_audio = Counting(audio, ("encode_wave_tokens",), {"encode_wave_tokens": "audio"})
    tower = registry.for_slot("tokens", lazy=True)
    res = compare_heads(RegistryHeads(registry), ex["image"], ex["text"], ex["audio"], counted_clip, counted_audio,
                        token_tower=tower)
    assert all(r["ok"] for r in res.rows) and len(res.rows) == 10
    assert calls == {"image": 1, "text": 1, "audio": 1}  # ten heads, each input encoded once
    for r in res.rows:
        alone = classify(registry.get(r["head"]), ex["image"], ex["text"], ex["audio"], clip, audio,
                         token_tower=tower)
        assert r["prediction"] == alone.labels[0]["label"]
        assert math.isclose(r["probability"], alone.labels[0]["score"], abs_tol=1e-5)
        assert r["contributions"] == pytest.approx({a["modality"]: a["top_drop"] for a in alone.ablation}, abs=1e-5)
        if "sound_match" in r["head"]:
            assert set(r["contributions"]) == {"image", "text", "audio"}
        assert not any("was ignored" in n for n in r["notices"])  # said by the inputs column, not per head


def test_picked_heads_unknown_ones_and_empty_inputs(registry, examples, encoders):
    clip, _ = encoders
    scene = _scene(examples)
    res = compare_heads(RegistryHeads(registry), scene["image"], scene["text"], None, clip,
                        names=["tiny-head-scene_qa-gated", "tiny-clip", "no-such-head"],
                        token_tower=registry.for_slot("tokens", lazy=True))
    gated, not_head, unknown = res.rows
    assert gated["ok"] and gated["kind"] == "gated"
    assert not not_head["ok"] and "not a fusion head" in not_head["error"]
    assert not unknown["ok"] and "No head named 'no-such-head'" in unknown["error"]
    with pytest.raises(MMDemoError) as err:
        compare_heads(RegistryHeads(registry), None, "", None, clip)
    assert err.value.code == "input_missing"
    # Audio heads alone, without the audio: every row says why, and a notice sums it up.
    res = compare_heads(RegistryHeads(registry), scene["image"], scene["text"], None, clip,
                        names=[n for n in registry.names(kind="fusion") if "sound_match" in n])
    assert not any(r["ok"] for r in res.rows)
    assert any(getattr(n, "code", None) == "compare_no_head_fits" for n in res.notices)
