"""One cross-modal gallery (mmdemo.tasks.mixed_gallery) on the tiny bundle's example images
and sounds: one space (the tiny audio lives in the CLIP's text space), and the text
bridge a CLIP + CLAP profile uses, exercised with the tiny audio posing as another space."""

import numpy as np
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.tasks import audio as audio_tasks
from mmdemo.tasks import image as image_tasks
from mmdemo.tasks.mixed_gallery import MAX_RESULTS, mixed_gallery, search_mixed


@pytest.fixture(scope="module")
def parts(clip, audio):
    images = image_tasks.build_gallery([image_tasks.default_gallery_files()], clip)
    sounds = audio_tasks.build_gallery([audio_tasks.default_gallery_files()], audio)
    return images, sounds


@pytest.fixture(scope="module")
def gallery(parts, clip, audio):
    return mixed_gallery(*parts, clip, audio)


class OtherSpace:
    """The tiny audio encoder claiming a space of its own, as a CLAP has."""

    space = "some-clap"

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_every_caption_finds_its_own_image_or_sound_first_among_both_kinds(gallery, clip, audio):
    items = [("image", it) for it in gallery.images.index.items] + [("sound", it) for it in gallery.sounds.items]
    assert gallery.shared and len(gallery) == len(items)
    misses = []
    for kind, item in items:
        top = search_mixed(gallery, clip, audio, by="text", text=item["caption"], k=3).hits[0]
        if (top["kind"], top["label"]) != (kind, item["name"]):
            misses.append((item["caption"], top["label"]))
    assert not misses, misses  # measured here: all 40 (24 images, 16 sounds)


def test_a_text_about_both_ranks_images_and_sounds_together(gallery, clip, audio):
    res = search_mixed(gallery, clip, audio, by="text", text="a red circle with a rising chirp", k=8)
    kinds = [h["kind"] for h in res.hits]
    assert {"image", "sound"} <= set(kinds) and res.method == "cosine"
    # The chirp is among the first two sounds: the audio tower learned sounds from texts about
    # sounds alone, and a scene's words in the same sentence pull it off (measured: the rising
    # chirp 0.297, a quiet low square tone 0.343; "a rising chirp" alone finds it first).
    assert "03-loud-rising-chirp.wav" in [h["label"] for h in res.hits if h["kind"] == "sound"][:2]
    scores = [h["score"] for h in res.hits]
    assert scores == sorted(scores, reverse=True) and all(h["score"] == h["cosine"] for h in res.hits)
    sound = next(h for h in res.hits if h["kind"] == "sound")
    assert 0 <= sound["start"] < sound["end"]  # the best window of the sound


def test_an_image_or_a_sound_finds_itself_first(gallery, clip, audio):
    first = gallery.images.index.items[0]
    res = search_mixed(gallery, clip, audio, by="image", image=first["path"], k=5)
    assert res.hits[0]["label"] == first["name"] and res.hits[0]["cosine"] == pytest.approx(1.0, abs=1e-3)
    chirp = next(it for it in gallery.sounds.items if "rising-chirp" in it["name"])
    res = search_mixed(gallery, clip, audio, by="sound", sound=chirp["path"], k=5)
    assert res.hits[0]["label"] == chirp["name"]


def test_bridged_spaces_rank_by_standardised_scores_and_say_so(parts, clip, audio):
    other = OtherSpace(audio)
    g = mixed_gallery(*parts, clip, other)
    assert not g.shared and "a loud rising chirp" in g.bridge_texts and len(g.bridge_texts) > 40
    res = search_mixed(g, clip, other, by="text", text="a loud rising chirp", k=MAX_RESULTS)
    assert res.method == "standardised per kind" and len(res.hits) == len(g)
    assert any(getattr(n, "code", None) == "bridged_spaces" for n in res.notices)
    assert next(h for h in res.hits if h["kind"] == "sound")["label"] == "03-loud-rising-chirp.wav"
    for kind in ("image", "sound"):  # z-scores over each kind's items
        z = np.array([h["score"] for h in res.hits if h["kind"] == kind])
        assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-2
    # An image reaches the sounds through the texts it matches; itself first among images.
    first = g.images.index.items[0]
    res = search_mixed(g, clip, other, by="image", image=first["path"], k=MAX_RESULTS)
    assert next(h for h in res.hits if h["kind"] == "image")["label"] == first["name"]
    assert sum(h["kind"] == "sound" for h in res.hits) == len(g.sounds)
    assert g.bridge_embeddings is not None  # embedded once, kept for the next search


@pytest.mark.parametrize("by, kwargs, code", [
    ("smell", {"text": "a"}, "query_kind_unknown"),
    ("text", {"text": "  "}, "query_empty"),
    ("image", {"text": "a red circle"}, "image_missing"),
    ("sound", {"text": "a red circle"}, "audio_missing"),
])
def test_bad_queries_are_refused_in_words(gallery, clip, audio, by, kwargs, code):
    with pytest.raises(MMDemoError) as err:
        search_mixed(gallery, clip, audio, by=by, **kwargs)
    assert err.value.code == code


def test_a_gallery_needs_something_indexed_by_the_models_in_use(parts, clip, audio):
    with pytest.raises(MMDemoError, match="needs some images or sounds"):
        mixed_gallery(None, None, clip, audio)
    images, sounds = parts
    only_images = mixed_gallery(images, None, clip, audio)
    hits = search_mixed(only_images, clip, audio, by="text", text="a rising chirp", k=4).hits
    assert {h["kind"] for h in hits} == {"image"}

    class Renamed(OtherSpace):
        model_id = "another-audio-model"

    with pytest.raises(MMDemoError, match="another audio model"):
        mixed_gallery(images, sounds, clip, Renamed(audio))
