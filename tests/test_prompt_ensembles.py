"""Prompt ensembles (issue 15 item 5): the averaging, the template checks, the built-in
sets against the tiny vocabulary, the zero-shot tasks with the tiny models, the API and
the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.errors import MMDemoError
from mmdemo.scores import softmax
from mmdemo.tasks import prompts
from mmdemo.toyworld import sounds as S

SR = S.SAMPLE_RATE
SOUND_LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone", "a major chord"]
SCENE_LABELS = "red circle\nblue star\ngreen square\nyellow triangle\nwhite heart"
TINY_IMAGE = prompts.builtin_set("image", "tiny-world").templates
TINY_AUDIO = prompts.builtin_set("audio", "tiny-world").templates


def sound(kind, variant, seconds=3.0, seed=1):
    return S.render_sound(S.SoundSpec((S.SoundEvent(kind, variant, seconds, 0.0),), True, seed))


# --------------------------------------------------------------------------- the averaging


def test_each_prompt_is_normalised_before_the_average_and_the_average_after():
    # Label "x" in two templates: one long vector along x, one short along y.
    emb = np.array([[10.0, 0.0], [0.0, 0.5]])
    got = prompts.average_templates(emb, 1, 2)
    np.testing.assert_allclose(got, [[2 ** -0.5, 2 ** -0.5]], atol=1e-6)  # a plain mean would lean to x
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_ensemble_embeddings_encode_every_label_in_every_template_label_major():
    seen = []

    def encode(texts):
        seen.append(list(texts))
        rng = np.random.default_rng(len(seen))
        return rng.normal(size=(len(texts), 8))

    out = prompts.ensemble_embeddings(encode, ["red star", "blue ring"], ["a {}", "a photo of a {}"])
    assert seen == [["a red star", "a photo of a red star", "a blue ring", "a photo of a blue ring"]]
    assert out.shape == (2, 8)
    raw = prompts.normalise(np.random.default_rng(1).normal(size=(4, 8)))
    np.testing.assert_allclose(out[1], prompts.normalise(raw[2:].mean(axis=0)), atol=1e-6)
    # No templates: the labels as typed, one encode each.
    seen.clear()
    prompts.ensemble_embeddings(encode, ["red star"], [])
    assert seen == [["red star"]]


def test_one_template_gives_exactly_what_the_single_prompt_gave():
    emb = prompts.normalise(np.random.default_rng(3).normal(size=(5, 16)))
    np.testing.assert_allclose(prompts.average_templates(emb, 5, 1), emb, atol=1e-6)


# --------------------------------------------------------------------------- checking templates


def test_templates_are_stripped_deduplicated_and_blank_means_none():
    assert prompts.parse_templates(None) == [] and prompts.parse_templates(" \n\n ") == []
    assert prompts.parse_templates(["", "  "]) == []
    assert prompts.parse_templates("  a {}\n\na {}\r\nthe sound of {} ") == ["a {}", "the sound of {}"]
    assert prompts.parse_templates(["a {}", "a photo of {}"]) == ["a {}", "a photo of {}"]
    assert prompts.fill("{x} a {}", "red {star}") == "{x} a red {star}"  # braces elsewhere are text


@pytest.mark.parametrize("text, match", [
    ("a photo of", r"'a photo of' must contain \{\} exactly once"),
    ("{} left of {}", r"must contain \{\} exactly once"),
    ("a photo of a {label}", r"exactly once, where the label goes"),
    ("a {}\n" * 1 + "\n".join(f"take {i} of {{}}" for i in range(32)), r"Too many prompt templates: 33 \(at most 32\)"),
    ("a " * 70 + "{}", r"142 characters long \(at most 120\)"),
])
def test_bad_templates_say_what_is_wrong(text, match):
    with pytest.raises(MMDemoError, match=match):
        prompts.parse_templates(text)


def test_the_example_in_the_message_fits_the_modality():
    with pytest.raises(MMDemoError, match="the sound of"):
        prompts.parse_templates("no slot", modality="audio")


# --------------------------------------------------------------------------- built-in sets


def _tiny_tokenizer():
    from mmdemo.models.tokenizer import WordTokenizer
    from mmdemo.paths import TINY_BUNDLE_DIR

    return WordTokenizer.load(TINY_BUNDLE_DIR / "tokenizer.json")


def test_tiny_world_sets_use_only_words_the_tiny_bundle_knows_and_real_sets_do_not():
    tok = _tiny_tokenizer()
    for modality, sets in prompts.BUILTIN_SETS.items():
        for s in sets.values():
            assert prompts.parse_templates(s.text, modality=modality) == list(s.templates)
            unknown = tok.unknown_words([t.replace("{}", "") for t in s.templates])
            assert (unknown == []) == s.for_tiny, (modality, s.name, unknown)
    # ... and the filled prompts fit the tiny model's 24-token context.
    filled = prompts.prompts_for(["a series of fast clicks"], TINY_AUDIO) + prompts.prompts_for(["yellow triangle"],
                                                                                               TINY_IMAGE)
    assert not any(tok.truncated(filled))


def test_the_built_in_set_is_picked_by_what_the_tokenizer_knows():
    class Tiny:
        unknown_words = staticmethod(_tiny_tokenizer().unknown_words)

    class Bpe:  # spells every word: no unknown_words
        pass

    assert prompts.pick_builtin(Tiny(), "image").name == "tiny-world"
    assert prompts.pick_builtin(Tiny(), "audio").name == "tiny-world"
    assert prompts.pick_builtin(Bpe(), "image").name == "clip-paper"
    assert prompts.pick_builtin(Bpe(), "audio").name == "generic-audio"


def test_sets_are_found_by_name_or_title_and_an_unknown_one_is_named():
    title, name = prompts.builtin_choices("image")[0]
    assert prompts.builtin_set("image", title).name == name == "tiny-world"
    with pytest.raises(MMDemoError, match="Unknown built-in template set 'imagenet-80'.*tiny-world, clip-paper"):
        prompts.builtin_set("image", "imagenet-80")
    with pytest.raises(MMDemoError, match="No built-in template sets for 'video'"):
        prompts.builtin_set("video", "tiny-world")


# --------------------------------------------------------------------------- tasks on the tiny models


@pytest.fixture(scope="module")
def scene_image(tmp_path_factory):
    from PIL import Image

    from mmdemo.toyworld import scenes

    path = tmp_path_factory.mktemp("scene") / "star.png"
    scene = scenes.Scene((scenes.SceneObject("star", "blue", "large", 0.5, 0.5),), "plain")
    Image.fromarray(scenes.render_scene(scene, size=64)).save(path)
    return str(path)


def test_zero_shot_image_with_an_ensemble_is_the_average_of_its_templates(clip, scene_image):
    from mmdemo.tasks import classify as tasks

    single = tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip)
    z = tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip, templates="\n".join(TINY_IMAGE))
    assert z.templates == list(TINY_IMAGE) and single.templates == [tasks.DEFAULT_TEMPLATE]
    assert z.prompts[0] == "a small red circle" and z.to_dict()["templates"] == list(TINY_IMAGE)
    scores = {r["label"]: r["score"] for r in z.labels}
    assert z.labels[0]["label"] == "blue star" and sum(scores.values()) == pytest.approx(1, abs=1e-5)
    before = {r["label"]: r["score"] for r in single.labels}
    # The ensemble changes the scores (in log terms: the top one is close to 1 both ways).
    assert max(abs(np.log(scores[k]) - np.log(before[k])) for k in scores) > 0.05
    # The CLIP paper's recipe, computed here by hand: normalised prompts, mean, normalised, softmax.
    names = SCENE_LABELS.split("\n")
    texts = clip.encode_texts([t.replace("{}", n) for n in names for t in TINY_IMAGE]).reshape(5, 10, -1)
    texts = texts / np.linalg.norm(texts, axis=-1, keepdims=True)
    label_emb = texts.mean(axis=1)
    label_emb /= np.linalg.norm(label_emb, axis=1, keepdims=True)
    inputs = tasks.read_inputs(scene_image, None, None)
    want = softmax(clip.logit_scale * clip.encode_images([inputs.image])[0] @ label_emb.T)
    assert [scores[n] for n in names] == pytest.approx(list(want), abs=1e-5)


def test_zero_shot_templates_replace_the_single_template_and_are_checked(clip, scene_image):
    from mmdemo.tasks import classify as tasks

    one = tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip, template="a photo of a {}")
    same = tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip, template="a {}", templates="a photo of a {}\n")
    assert [r["score"] for r in same.labels] == pytest.approx([r["score"] for r in one.labels], abs=1e-6)
    with pytest.raises(MMDemoError, match="exactly once"):
        tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip, templates="a {}\na photo")
    z = tasks.zero_shot(scene_image, None, None, SCENE_LABELS, clip, templates="itap of a {}.")
    (notice,) = [n for n in z.notices if n.code == "words_unknown"]
    assert notice.subject == "itap"  # a real-model template on the tiny model is flagged


def test_zero_shot_audio_in_the_clip_space_gets_the_same_ensemble(clip, audio):
    from mmdemo.tasks import classify as tasks

    wave = sound("chirp", "rising")
    labels = "\n".join(SOUND_LABELS)
    z = tasks.zero_shot(None, None, (SR, wave), labels, clip, audio, weights={"audio": 1},
                        templates="\n".join(TINY_AUDIO))
    a = audio.encode_waves([tasks.read_inputs(None, None, (SR, wave), audio_rate=audio.sample_rate).wave])[0]
    want = softmax(audio.logit_scale * a @ prompts.ensemble_embeddings(audio.encode_texts, SOUND_LABELS, TINY_AUDIO).T)
    got = {r["label"]: r["score"] for r in z.per_modality["audio"]}
    assert [got[n] for n in SOUND_LABELS] == pytest.approx(list(want), abs=1e-5)
    assert z.labels[0]["label"] == "a rising chirp"


def test_match_audio_with_the_built_in_set(audio):
    from mmdemo.tasks import audio as A

    plain = A.match_audio((SR, sound("noise", "white")), SOUND_LABELS, audio)
    m = A.match_audio((SR, sound("noise", "white")), SOUND_LABELS, audio, templates="\n".join(TINY_AUDIO))
    assert m.templates == list(TINY_AUDIO) and plain.templates == ["{}"]
    assert m.labels[0]["label"] == "a burst of white noise"
    assert sum(r["score"] for r in m.labels) == pytest.approx(1, abs=1e-5)
    sims = {b["label"]: b["similarity"] for b in m.best}
    plain_sims = {b["label"]: b["similarity"] for b in plain.best}
    assert max(abs(sims[k] - plain_sims[k]) for k in sims) > 1e-4
    assert not [n for n in m.notices if n.code == "words_unknown"]
    with pytest.raises(MMDemoError, match="Too many prompt templates: 40"):
        A.match_audio((SR, sound("noise", "white")), SOUND_LABELS, audio,
                      templates=[f"take {i} of {{}}" for i in range(40)])


def test_the_evaluation_section_reports_single_ensemble_and_gain(clip, audio):
    from mmdemo.tasks.world_eval import prompt_ensemble

    out = prompt_ensemble(clip, audio, seed=5, n=24)
    assert set(out) == {"image", "audio"}
    for modality, row in out.items():
        assert 0 <= row["single"] <= 1 and 0 <= row["ensemble"] <= 1 and row["n"] == 24
        assert row["gain"] == pytest.approx(row["ensemble"] - row["single"], abs=1e-4)
        assert row["ensemble"] > 3 * row["chance"], (modality, row)  # the tiny models do know their world
    assert out["image"]["templates"] == len(TINY_IMAGE) and out["audio"]["single_template"] == "{}"


def test_cli_eval_runs_the_prompt_ensemble_section_alone(capsys):
    from mmdemo.cli import main

    assert main(["eval", "--only", "prompt_ensemble", "--n", "20", "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seed"] == 3 and set(out) == {"seed", "prompt_ensemble", "second_generator"}
    for section in (out["prompt_ensemble"], out["second_generator"]["prompt_ensemble"]):
        assert section["image"]["n"] == section["audio"]["n"] == 20
    assert main(["eval", "--only", "prompt_ensemble", "--write-card"]) == 2
    assert "--write-card needs the whole evaluation" in capsys.readouterr().err


def test_cli_match_audio_adds_the_built_in_set_the_model_can_read(tmp_path, capsys):
    import soundfile as sf

    from mmdemo.cli import main

    clip = tmp_path / "chirp.wav"
    sf.write(clip, sound("chirp", "rising"), SR)
    assert main(["match-audio", str(clip), "a rising chirp", "white noise", "--template-set", "auto", "--json",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["templates"] == list(TINY_AUDIO) and out["labels"][0]["label"] == "a rising chirp"
    assert main(["match-audio", str(clip), "a rising chirp", "--template-set", "imagenet", "--device", "cpu"]) == 2
    assert "Unknown built-in template set 'imagenet'" in capsys.readouterr().err


# --------------------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


def _confidences(label_out) -> dict:
    return {c["label"]: c["confidence"] for c in label_out["confidences"]}


def test_api_zero_shot_takes_templates_last_and_old_calls_still_work(client, scene_image):
    old = client.predict(handle_file(scene_image), "", None, SCENE_LABELS, "a {}", 1, 0.5, 0.5,
                         api_name="/classify_zero_shot")
    label, info, _ = client.predict(handle_file(scene_image), "", None, SCENE_LABELS, "a {}", 1, 0.5, 0.5,
                                    "\n".join(TINY_IMAGE), api_name="/classify_zero_shot")
    assert "average of 10 templates" in info and "average of" not in old[1]
    got, before = _confidences(label), _confidences(old[0])
    assert label["label"] == "blue star" and abs(sum(got.values()) - 1) < 1e-3
    assert max(abs(np.log(got[k]) - np.log(before[k])) for k in got) > 0.05


def test_api_bad_templates_get_a_clear_message_and_the_server_keeps_serving(client, scene_image, tmp_path):
    with pytest.raises(AppError, match=r"'a photo' must contain \{\} exactly once"):
        client.predict(handle_file(scene_image), "", None, SCENE_LABELS, "a {}", 1, 0.5, 0.5, "a {}\na photo",
                       api_name="/classify_zero_shot")
    with pytest.raises(AppError, match="Too many prompt templates: 33"):
        client.predict(handle_file(scene_image), "", None, SCENE_LABELS, "a {}", 1, 0.5, 0.5,
                       "\n".join(f"take {i} of {{}}" for i in range(33)), api_name="/classify_zero_shot")
    import soundfile as sf

    path = tmp_path / "noise.wav"
    sf.write(path, sound("noise", "white"), SR)
    with pytest.raises(AppError, match="characters long"):
        client.predict(handle_file(str(path)), "\n".join(SOUND_LABELS), "the sound of " + "x" * 200 + " {}",
                       api_name="/match_audio")
    ranked, summary, *_ = client.predict(handle_file(str(path)), "\n".join(SOUND_LABELS), "\n".join(TINY_AUDIO),
                                         api_name="/match_audio")
    assert ranked["label"] == "a burst of white noise" and "4 templates averaged" in summary
