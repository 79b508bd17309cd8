"""The generated world: seeded, well-formed, captions that parse back, sounds whose
spectra match their names, and fusion tasks no single modality can solve."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmdemo.errors import MMDemoError
from mmdemo.toyworld import scenes as W
from mmdemo.toyworld import sounds as S
from mmdemo.toyworld import tasks as T
from mmdemo.toyworld.export import export_examples


def rng(seed=0):
    return np.random.default_rng(seed)


def triples(scene):
    return [(o.size, o.colour, o.shape) for o in scene.objects]


# --------------------------------------------------------------------------- scenes


def test_scenes_are_seeded_and_rendering_is_a_function_of_the_scene():
    a = [W.sample_scene(rng(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    many_a = [W.sample_scene(g) for g in [rng(5)] for _ in range(50)]
    many_b = [W.sample_scene(g) for g in [rng(5)] for _ in range(50)]
    many_c = [W.sample_scene(g) for g in [rng(6)] for _ in range(50)]
    assert many_a == many_b and many_a != many_c
    np.testing.assert_array_equal(W.render_scene(many_a[7]), W.render_scene(many_b[7]))
    for size in (64, 96):
        img = W.render_scene(many_a[0], size=size)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8


def test_scenes_are_well_formed():
    g = rng(1)
    sc = [W.sample_scene(g, split="any") for _ in range(600)]
    counts = Counter(len(s.objects) for s in sc)
    assert set(counts) == {1, 2, 3} and min(counts.values()) > 150  # uniform 1-3
    for s in sc:
        xs = [o.x for o in s.objects]
        assert xs == sorted(xs) and len(s.pairs) == len(s.objects)
        assert s.background in W.BACKGROUNDS
        for i, a in enumerate(s.objects):
            ra = W._SIZE_FRAC[a.size] / 2
            assert ra <= a.x <= 1 - ra and ra <= a.y <= 1 - ra
            for b in s.objects[i + 1:]:
                rb = W._SIZE_FRAC[b.size] / 2
                assert math.hypot(a.x - b.x, a.y - b.y) > 1.1 * (ra + rb)  # never overlap
                assert abs(a.x - b.x) >= 0.1  # "left of" is visible
    assert len({s.background for s in sc}) == 4 and len({s.hue for s in sc}) > 50


def test_held_out_pairs_stay_out_of_training_and_are_always_in_heldout():
    assert 5 <= len(W.HELD_OUT) <= 8
    g = rng(2)
    train = [W.sample_scene(g, split="train") for _ in range(1500)]
    held = [W.sample_scene(g, split="heldout") for _ in range(300)]
    assert not any(s.pairs & W.HELD_OUT for s in train)
    assert all(s.pairs & W.HELD_OUT for s in held)
    seen = set().union(*(s.pairs for s in train))
    assert seen == {(c, sh) for c in W.COLOURS for sh in W.SHAPES} - W.HELD_OUT  # every other pair is trained
    with pytest.raises(ValueError):
        W.sample_scene(g, split="train", required=[next(iter(W.HELD_OUT))])
    s = W.sample_scene_with(g, [("large", "red", "star"), ("blue", "ring")], 3, forbid={("green", "heart")})
    assert ("large", "red", "star") in triples(s) and ("blue", "ring") in s.pairs and len(s.objects) == 3


def test_caption_wording_and_round_trip():
    obj = lambda sh, c, sz, x: W.SceneObject(sh, c, sz, x, 0.5)  # noqa: E731
    one = W.Scene((obj("circle", "red", "large", 0.5),), "striped")
    two = W.Scene((obj("circle", "red", "large", 0.3), obj("star", "blue", "small", 0.7)), "plain")
    three = W.Scene((obj("circle", "red", "large", 0.2), obj("star", "blue", "small", 0.5),
                     obj("ring", "green", "small", 0.8)), "dotted")
    assert W.caption(one) == "a large red circle on a striped background"
    assert W.caption(two) == "a large red circle left of a small blue star on a plain background"
    assert W.caption(three) == "a large red circle, a small blue star and a small green ring on a dotted background"
    assert W.mention(two.objects[1]) == "a small blue star" and W.mention(two.objects[1], False) == "a blue star"
    g = rng(4)
    for s in (W.sample_scene(g, split="any") for _ in range(500)):
        cap = W.caption(s)
        assert W.parse_caption(cap) == triples(s) and W.parse_background(cap) == s.background


def test_paraphrases_keep_every_fact_and_vary():
    g = rng(5)
    size_words = {"small": {"small", "little", "tiny"}, "large": {"large", "big", "huge"}}
    wordings = set()
    for s in (W.sample_scene(g, n_objects=1 + k % 3) for k in range(150)):
        for text in W.paraphrases(s, g, 4):
            wordings.add(text)
            words = W.tokenize(text)
            assert s.background in words and "background" in words
            for o in s.objects:
                i = next(i for i in range(len(words) - 2) if words[i + 1:i + 3] == [o.colour, o.shape])
                assert words[i] in size_words[o.size], (text, o)
    assert len(wordings) > 500


@pytest.mark.parametrize("background", W.BACKGROUNDS)
def test_every_colour_is_visible_where_its_object_is(background):
    for k, colour in enumerate(W.COLOURS):
        for shape in W.SHAPES:
            o = W.SceneObject(shape, colour, "large", 0.5, 0.5)
            scene = W.Scene((o,), background, tint=12 - 3 * k, hue=(8, -8, 8), phase=k)
            img = W.render_scene(scene, size=64).astype(int)
            r = W._SIZE_FRAC["large"] / 2 * 64
            px, py = (32 + 0.8 * r, 32) if shape == "ring" else (32, 32)
            got = img[int(py), int(px)]
            assert np.abs(got - COLOUR_RGB[colour]).max() < 30, (colour, shape, got)
            corner = img[1, 1]
            assert np.abs(corner - COLOUR_RGB[colour]).max() > 30 and np.ptp(img[0:3, 0:3, :].mean(-1)) < 60


COLOUR_RGB = {k: np.array(v) for k, v in W.COLOURS.items()}


def test_backgrounds_are_light_greys_every_colour_stands_out_from():
    g = rng(7)
    for s in (W.sample_scene(g) for _ in range(40)):
        bg = W.render_scene(W.Scene((), s.background, s.tint, s.hue, s.phase)).reshape(-1, 3).astype(int)
        assert 120 <= bg.min() and bg.max() <= 215  # mid/light grey, never white
        assert np.abs(bg - bg.mean(1, keepdims=True)).max() <= 12  # only a slight tint


# --------------------------------------------------------------------------- sounds


def dominant_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / S.SAMPLE_RATE)[spec.argmax()]


def single(kind, variant, seconds=1.5, loud=True, seed=0):
    return S.render_sound(S.SoundSpec((S.SoundEvent(kind, variant, seconds, 0.0),), loud, seed))


def test_sounds_are_seeded_bounded_and_sized():
    a = [S.sample_sound(g) for g in [rng(8)] for _ in range(40)]
    b = [S.sample_sound(g) for g in [rng(8)] for _ in range(40)]
    assert a == b and len({len(s.events) for s in a}) == 2
    for spec in a:
        x = S.render_sound(spec)
        assert x.dtype == np.float32 and x.ndim == 1 and np.isfinite(x).all()
        assert np.abs(x).max() <= 1.0 and 1.0 <= len(x) / S.SAMPLE_RATE <= 4.0 + 1e-6
        assert abs(len(x) - spec.duration * S.SAMPLE_RATE) <= len(spec.events)
        np.testing.assert_array_equal(x, S.render_sound(spec))
        if spec.events[0].kind != "clicks":
            assert abs(x[0]) < 1e-3  # faded in: no click at the start
        if spec.events[-1].kind != "clicks":
            assert abs(x[-1]) < 1e-2
    assert np.abs(single("tone", "mid sine", loud=True)).max() > 4 * np.abs(single("tone", "mid sine", loud=False)).max()


def test_sound_classes_have_the_spectra_their_names_promise():
    for kind in ("rising", "falling"):
        x = single("chirp", kind, 2.0)
        q = len(x) // 4
        early, late = dominant_hz(x[:q]), dominant_hz(x[-q:])
        assert (late > 2 * early) if kind == "rising" else (early > 2 * late)
    for wave in S.WAVES:
        low, mid, high = (dominant_hz(single("tone", f"{p} {wave}")) for p in ("low", "mid", "high"))
        assert low < mid < high
    assert abs(dominant_hz(single("tone", "mid sine")) - 440) < 5

    def centroid(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return (np.fft.rfftfreq(len(x), 1 / S.SAMPLE_RATE) * spec).sum() / spec.sum()

    white, pink, brown = (centroid(single("noise", v)) for v in ("white", "pink", "brown"))
    assert white > pink > brown

    def onsets(x):
        env = np.abs(x) > 0.3 * np.abs(x).max()
        return int((env[1:] & ~env[:-1]).sum())

    assert onsets(single("clicks", "fast", 2.0)) > 3 * onsets(single("clicks", "slow", 2.0))
    major, minor = (np.abs(np.fft.rfft(single("chord", v))) for v in ("major", "minor"))
    assert np.corrcoef(major, minor)[0, 1] < 0.9


def test_each_sound_class_has_one_canonical_description_that_parses_back():
    descs = {}
    for loud in (True, False):
        for k1 in S.EVENT_KEYS:
            for k2 in (None, *S.EVENT_KEYS):
                if k2 == k1:
                    continue
                events = tuple(S.SoundEvent(*k, 1.0, 0.0) for k in (k1, k2) if k)
                spec = S.SoundSpec(events, loud, 0)
                d = S.describe(spec)
                assert d == S.describe(S.SoundSpec(events, loud, 99))  # random params don't matter
                descs[(loud, k1, k2)] = d
                assert S.parse_description(d) == (loud, [k1] + ([k2] if k2 else []))
    assert len(set(descs.values())) == len(descs) == 2 * 18 * 18
    assert descs[(True, ("chirp", "rising"), None)] == "a loud rising chirp"
    assert descs[(False, ("tone", "low sine"), ("chirp", "rising"))] == "a quiet low sine tone followed by a rising chirp"
    classes = S.sound_classes()
    assert len(classes) == len(set(classes)) == len(S.EVENT_KEYS) and "a rising chirp" in classes


def test_sound_paraphrases_vary_and_keep_the_loudness():
    g = rng(9)
    out = set()
    for spec in (S.sample_sound(g) for _ in range(100)):
        for text in S.paraphrases(spec, g, 3):
            words = set(W.tokenize(text))
            assert words & ({"loud", "strong"} if spec.loud else {"quiet", "soft", "faint"})
            out.add(text)
    assert len(out) > 250


def test_vocabulary_covers_every_generated_text():
    from mmdemo.toyworld.vocabulary import vocabulary

    vocab = vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() for w in vocab)
    vocab = set(vocab)
    g = rng(10)
    texts = list(S.sound_classes())
    for _ in range(300):
        s, spec = W.sample_scene(g, split="any"), S.sample_sound(g)
        texts += [W.caption(s), *W.paraphrases(s, g, 2), W.mention(s.objects[0]), W.mention(s.objects[0], False),
                  S.describe(spec), *S.paraphrases(spec, g, 2)]
    for task in T.TASKS:
        texts += [e.text for e in T.make_examples(task, 200, seed=1, render=False)]
    missing = {w for t in texts for w in W.tokenize(t)} - vocab
    assert not missing


# --------------------------------------------------------------------------- tasks


def test_task_registry_and_unknown_names():
    assert set(T.TASKS) == {"scene_qa", "scene_sound_match"}
    assert T.task_info("scene_qa").labels == ("no", "yes")
    assert T.task_info("scene_sound_match").modalities == ("image", "text", "audio")
    with pytest.raises(MMDemoError, match="scene_qa.*scene_sound_match"):
        T.task_info("nope")
    with pytest.raises(MMDemoError, match="split"):
        T.make_examples("scene_qa", 4, 0, split="test")


def test_task_examples_are_seeded_balanced_and_well_formed():
    for task, info in T.TASKS.items():
        a = T.make_examples(task, 24, seed=3, image_size=32)
        b = T.make_examples(task, 24, seed=3, image_size=32)
        assert [e.text for e in a] == [e.text for e in b] and [e.label for e in a] == [e.label for e in b]
        np.testing.assert_array_equal(a[5].image, b[5].image)
        assert Counter(e.label for e in a) == {lab: 24 // len(info.labels) for lab in info.labels}
        for e in a:
            assert e.image.shape == (32, 32, 3) and e.image.dtype == np.uint8
            assert (e.audio is not None) == ("audio" in info.modalities)
            if e.audio is not None:
                assert e.audio.dtype == np.float32 and len(e.sound.events) == 1


def _asked(text):
    words = W.tokenize(text.split(" with ")[0])
    size = next((w for w in words if w in W.SIZES), None)
    return size, words[-3 if words[-1] == "?" else -2], words[-2 if words[-1] == "?" else -1]


def test_labels_follow_the_generated_content():
    for split in ("train", "heldout"):
        for e in T.make_examples("scene_qa", 400, seed=4, split=split, render=False):
            size, colour, shape = _asked(e.text)
            present = any(o.pair == (colour, shape) and size in (None, o.size) for o in e.scene.objects)
            assert e.label == ("yes" if present else "no")
            if split == "train":
                assert not e.scene.pairs & W.HELD_OUT and (colour, shape) not in W.HELD_OUT
            else:
                assert (colour, shape) in W.HELD_OUT and e.scene.pairs & W.HELD_OUT
    for e in T.make_examples("scene_sound_match", 400, seed=4, render=False):
        _, colour, shape = _asked(e.text)
        image_ok = (colour, shape) in e.scene.pairs
        heard = e.sound.events[0]
        sound_ok = e.text.endswith(S.EVENTS[(heard.kind, heard.variant)])
        assert (heard.kind, heard.variant) in T.SOUND_MATCH_CLASSES
        assert e.label == {(True, True): "match", (False, True): "image mismatch",
                           (True, False): "sound mismatch", (False, False): "both mismatch"}[(image_ok, sound_ok)]


def _probe_accuracy(features, labels):
    """Held-out accuracy of a ridge-regression linear probe (one-vs-rest)."""
    x = np.hstack([np.asarray(features, float), np.ones((len(features), 1))])
    classes = sorted(set(labels))
    y = np.array([[lab == c for c in classes] for lab in labels], float)
    cut = len(x) * 3 // 4
    w = np.linalg.solve(x[:cut].T @ x[:cut] + 1.0 * np.eye(x.shape[1]), x[:cut].T @ y[:cut])
    return float(((x[cut:] @ w).argmax(1) == y[cut:].argmax(1)).mean())


def _scene_features(scene):
    f = np.zeros(2 * 8 * 8 + 8 + 8 + 4 + 3)
    for o in scene.objects:
        c, s = list(W.COLOURS).index(o.colour), W.SHAPES.index(o.shape)
        f[W.SIZES.index(o.size) * 64 + c * 8 + s] = 1
        f[128 + c] += 1
        f[136 + s] += 1
    f[144 + W.BACKGROUNDS.index(scene.background)] = 1
    f[148 + len(scene.objects) - 1] = 1
    return f


def _text_yes_rate_chi2(examples):
    by_text = Counter((e.text, e.label) for e in examples)
    texts = {e.text for e in examples}
    chi2 = sum((by_text[(t, 'yes')] - by_text[(t, 'no')]) ** 2 / (by_text[(t, 'yes')] + by_text[(t, 'no')])
               for t in texts)
    return chi2, len(texts)


def test_scene_qa_needs_both_image_and_question():
    ex = T.make_examples("scene_qa", 4000, seed=11, render=False)
    chi2, df = _text_yes_rate_chi2(ex)  # each question's yes-rate ~0.5
    assert chi2 < df + 4 * math.sqrt(2 * df), (chi2, df)
    assert df > 150  # sized and unsized questions about every trained pair
    labels = [e.label for e in ex]
    assert _probe_accuracy([_scene_features(e.scene) for e in ex], labels) < 0.56  # image content alone
    # ...but together they decide it: "is the asked pair in the picture" is the label
    # for unsized questions, and a look-alike is in every "no" picture.
    for e in ex[:500]:
        _, colour, shape = _asked(e.text)
        if e.label == "no":
            assert any(o.colour == colour or o.shape == shape for o in e.scene.objects)


def test_scene_sound_match_needs_all_three():
    ex = T.make_examples("scene_sound_match", 3000, seed=12, render=False)
    labels = [e.label for e in ex]
    keys = list(T.SOUND_MATCH_CLASSES)
    heard = [np.eye(len(keys))[keys.index((e.sound.events[0].kind, e.sound.events[0].variant))] for e in ex]
    said = [np.eye(len(keys))[[i for i, k in enumerate(keys) if e.text.endswith(S.EVENTS[k])][0]] for e in ex]
    pairs = [(c, s) for c in W.COLOURS for s in W.SHAPES]
    asked = [np.eye(64)[pairs.index(_asked(e.text)[1:])] for e in ex]
    chance = 0.25
    assert _probe_accuracy(heard, labels) < chance + 0.05  # audio alone
    assert _probe_accuracy(np.hstack([said, asked]), labels) < chance + 0.05  # text alone
    assert _probe_accuracy([_scene_features(e.scene) for e in ex], labels) < chance + 0.05  # image alone
    # Audio with text settles the sound half of the label, and no more.
    joint = [np.outer(h, s).ravel() for h, s in zip(heard, said)]
    assert 0.45 < _probe_accuracy(joint, labels) < 0.55


# --------------------------------------------------------------------------- export


def test_export_writes_readable_galleries(tmp_path):
    report = export_examples(tmp_path, n_images=10, n_sounds=6, seed=5)
    images, sound_dir = tmp_path / "images", tmp_path / "sounds"
    caps = json.loads((images / "captions.json").read_text())
    assert caps == report["images"] and len(caps) == 10
    assert {p.name for p in images.glob("*.png")} == set(caps)
    colours_seen = set()
    for name, cap in caps.items():
        with Image.open(images / name) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        colours_seen |= {c for _, c, _ in W.parse_caption(cap)}
    assert colours_seen == set(W.COLOURS)
    descs = json.loads((sound_dir / "captions.json").read_text())
    assert descs == report["sounds"] and len(descs) == 6 and set(descs) == {p.name for p in sound_dir.glob("*.wav")}
    for name, desc in descs.items():
        info = sf.info(sound_dir / name)
        assert info.samplerate == S.SAMPLE_RATE and info.subtype == "PCM_16" and info.channels == 1
        wave, _ = sf.read(sound_dir / name)
        assert 1.0 <= len(wave) / S.SAMPLE_RATE <= 4.0 and S.parse_description(desc)[1]
    assert not list(tmp_path.rglob("*.tmp"))
    (images / "mine.png").write_bytes(b"not ours")
    export_examples(tmp_path, n_images=3, n_sounds=2, seed=6)  # a smaller gallery replaces the old one
    assert {p.name for p in images.glob("*.png")} == set(json.loads((images / "captions.json").read_text())) | {"mine.png"}
    assert len(list(sound_dir.glob("*.wav"))) == 2
