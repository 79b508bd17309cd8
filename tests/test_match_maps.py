"""Why it matched: maps of where an image matched a text and when a sound matched,
on the shipped tiny bundle, on a plain open_clip ViT (random, patchify), and through
the API with bad input."""

import json

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from mmdemo.errors import MMDemoError
from mmdemo.tasks import match_maps as maps
from mmdemo.toyworld import scenes, sounds


def _two_object_scenes(n, seed):
    rng = np.random.default_rng(seed)
    return [scenes.sample_scene(rng, n_objects=2, split="train") for _ in range(n)]


def _inside(peak, box):
    return box[0] <= peak[0] <= box[2] and box[1] <= peak[1] <= box[3]


# --------------------------------------------------------------------------- pure parts


def test_a_hot_token_is_drawn_at_its_receptive_fields_centre():
    grid = np.zeros((8, 8))
    grid[2, 5] = 1.0
    # A conv stem's token (i, j) looks at pixels centred on 8 * (i, j) + 0.5, not on the patch's middle.
    heat = maps.heat_over_view(grid, {"stride": 8.0, "offset": 0.5, "size": 64})
    assert heat.shape == (64, 64) and heat.min() == 0 and heat.max() == 1
    x, y = maps.peak_of(heat)
    assert abs(x * 64 - 40.5) <= 1 and abs(y * 64 - 16.5) <= 1
    patchify = maps.peak_of(maps.heat_over_view(grid, {"stride": 8.0, "offset": 4.0, "size": 64}))
    assert abs(patchify[0] * 64 - 44) <= 1 and abs(patchify[1] * 64 - 20) <= 1


def test_a_flat_map_is_all_zero_not_nan():
    heat = maps.heat_over_view(np.full((4, 4), 0.3), {"stride": 8.0, "offset": 4.0, "size": 32})
    assert np.isfinite(heat).all() and heat.max() == 0


def test_token_geometry_follows_the_stem(clip, tiny_registry):
    from mmdemo.batching import unwrap
    from mmdemo.models.saliency import token_geometry

    assert token_geometry(unwrap(clip).model) == {"stride": 8.0, "offset": 0.5, "size": 64}


# --------------------------------------------------------------------------- the tiny CLIP


def test_the_map_points_at_the_named_object(clip):
    """The eval (n=500) measures 0.916 for chefer; a sample of 60 must stay clearly above
    chance (the named box covers ~10% of the image)."""
    items = _two_object_scenes(30, seed=11)
    images, texts, boxes = [], [], []
    for scene in items:
        im = Image.fromarray(scenes.render_scene(scene))
        for obj in scene.objects:  # both objects of the same image, in turn
            images.append(im)
            texts.append(scenes.mention(obj))
            boxes.append(scenes.box(obj))
    heats = maps.image_maps(clip, images, texts, "chefer")
    hits = [_inside(maps.peak_of(h), b) for h, b in zip(heats, boxes)]
    assert np.mean(hits) >= 0.8
    # The map follows the text: the same image, the other object named, peaks elsewhere.
    both = [hits[i] and hits[i + 1] for i in range(0, len(hits), 2)]
    assert np.mean(both) >= 0.6


def test_patch_token_method_also_beats_chance(clip):
    items = _two_object_scenes(40, seed=12)
    images = [Image.fromarray(scenes.render_scene(s)) for s in items]
    texts = [scenes.mention(s.objects[0]) for s in items]
    heats = maps.image_maps(clip, images, texts, "tokens")
    assert np.mean([_inside(maps.peak_of(h), scenes.box(s.objects[0])) for h, s in zip(heats, items)]) >= 0.4


def test_explain_returns_the_models_view_the_map_and_the_similarity(clip):
    scene = _two_object_scenes(1, seed=3)[0]
    image = Image.fromarray(scenes.render_scene(scene)).resize((200, 120))  # not square: the model crops
    res = maps.explain_image_text(image, scenes.mention(scene.objects[0]), clip, method="chefer")
    assert res.view.size == (64, 64) and res.heat.shape == (64, 64)
    assert 0 <= res.heat.min() and res.heat.max() == pytest.approx(1.0)
    assert -1 <= res.similarity <= 1
    drawn = maps.overlay(res)
    assert drawn.size == (maps.OVERLAY_PIXELS, maps.OVERLAY_PIXELS)
    assert np.asarray(drawn).std() > 10  # an image, not a blank


def test_contrast_texts_change_the_gradient_map(clip):
    scene = _two_object_scenes(1, seed=4)[0]
    image = Image.fromarray(scenes.render_scene(scene))
    text, other = (scenes.mention(o) for o in scene.objects)
    plain = maps.explain_image_text(image, text, clip)
    against = maps.explain_image_text(image, text, clip, contrast=[other, text, "", other])
    assert not np.allclose(plain.heat, against.heat)


def test_the_gradient_leaves_the_shared_model_untouched(clip):
    from mmdemo.batching import unwrap

    model = unwrap(clip).model
    scene = _two_object_scenes(1, seed=5)[0]
    maps.explain_image_text(Image.fromarray(scenes.render_scene(scene)), "a red star", clip)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize("text, method, code", [("", "chefer", "text_empty"), ("   ", "tokens", "text_empty"),
                                                ("a red star", "gradcam", "map_method_unknown")])
def test_bad_requests_say_what_to_fix(clip, text, method, code):
    image = Image.fromarray(scenes.render_scene(_two_object_scenes(1, seed=6)[0]))
    with pytest.raises(MMDemoError) as err:
        maps.explain_image_text(image, text, clip, method=method)
    assert err.value.code == code


def test_a_model_without_maps_is_refused_in_words():
    class NoMaps:
        model_id = "x"

    with pytest.raises(MMDemoError, match="cannot show where"):
        maps.explain_image_text(Image.new("RGB", (8, 8)), "a red star", NoMaps())


# --------------------------------------------------------------------------- a plain open_clip ViT


@pytest.fixture(scope="module")
def patchify_clip(test_catalog):
    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    return Registry(load_catalog(test_catalog), device="cpu", profile="test").for_slot("clip")


@pytest.mark.parametrize("method", ["chefer", "tokens"])
def test_any_open_clip_vit_gets_a_map(patchify_clip, method):
    """The test profile's random ViT (32 px, 8-px patchify conv, as real open_clip ViTs)."""
    from mmdemo.batching import unwrap
    from mmdemo.models.saliency import token_geometry

    assert token_geometry(unwrap(patchify_clip).model) == {"stride": 8.0, "offset": 4.0, "size": 32}
    res = maps.explain_image_text(Image.new("RGB", (50, 40), (200, 30, 30)), "a red square", patchify_clip,
                                  method=method)
    assert res.heat.shape == (32, 32) and np.isfinite(res.heat).all()


def test_a_coca_gets_the_gradient_map_and_a_clear_no_for_patch_tokens(captioner):
    """A CoCa pools with attention: its patch tokens are not in the projected space."""
    scene = _two_object_scenes(1, seed=9)[0]
    image = Image.fromarray(scenes.render_scene(scene))
    res = maps.explain_image_text(image, scenes.mention(scene.objects[0]), captioner, method="chefer")
    assert res.heat.shape == (64, 64) and res.heat.max() == pytest.approx(1.0)
    with pytest.raises(MMDemoError, match="Use the 'chefer' method"):
        maps.explain_image_text(image, scenes.mention(scene.objects[0]), captioner, method="tokens")


# --------------------------------------------------------------------------- sounds


@pytest.fixture(scope="module")
def tone_after_silence(tmp_path_factory):
    """1.5 s of silence, then a generated sound (a mid sine tone), then silence."""
    rng = np.random.default_rng(0)
    while True:
        spec = sounds.sample_sound(rng, n_events=1)
        if "mid" in sounds.describe(spec) and "tone" in sounds.describe(spec):
            break
    wave = sounds.render_sound(spec)
    sr = sounds.SAMPLE_RATE
    pad = np.zeros(int(1.5 * sr), np.float32)
    path = tmp_path_factory.mktemp("why") / "tone.wav"
    sf.write(path, np.concatenate([pad, wave, pad]), sr)
    return path, sounds.describe(spec), (1.5, 1.5 + len(wave) / sr)


def test_the_audio_map_finds_when_and_in_which_band(audio, tone_after_silence):
    path, text, (start, end) = tone_after_silence
    res = maps.explain_audio_text(str(path), text, audio)
    assert res.window[0] < end and res.window[1] > end and res.time_profile.shape == (maps.TIME_SLICES,)
    mids = (res.time_edges[:-1] + res.time_edges[1:]) / 2
    during, after = (mids > start + 0.1) & (mids < end - 0.1), mids > end + 0.1
    assert during.any() and after.any()
    # Silencing the silence after the tone changes nothing; silencing the tone lowers the match.
    assert np.abs(res.time_profile[after]).max() < 0.02
    assert res.time_profile[during].mean() > 0.05
    band = int(np.argmax(res.band_profile))
    lo, hi = res.band_edges[band], res.band_edges[band + 1]
    assert lo <= sounds.PITCHES["mid"] <= hi  # the band that holds the 440 Hz tone matters most
    assert res.grid.shape == (maps.GRID_BANDS, maps.GRID_SLICES) and res.grid.max() > 0.05


def test_the_audio_map_wants_a_text(audio, tone_after_silence):
    with pytest.raises(MMDemoError, match="Type the text"):
        maps.explain_audio_text(str(tone_after_silence[0]), "  ", audio)


# --------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory):
    scene = _two_object_scenes(1, seed=8)[0]
    path = tmp_path_factory.mktemp("why") / "scene.png"
    Image.fromarray(scenes.render_scene(scene)).save(path)
    return path, scene


def test_explain_image_text_through_the_api(client, scene_png):
    path, scene = scene_png
    picture, notes = client.predict(handle_file(str(path)), scenes.mention(scene.objects[0]), "chefer", "",
                                    api_name="/explain_image_text")
    with Image.open(picture) as im:
        assert im.size == (maps.OVERLAY_PIXELS, maps.OVERLAY_PIXELS)
    assert "cosine similarity" in notes and scenes.mention(scene.objects[0]) in notes
    # The other object, explained against the first: a different map.
    other, _ = client.predict(handle_file(str(path)), scenes.mention(scene.objects[1]), "chefer",
                              scenes.mention(scene.objects[0]), api_name="/explain_image_text")
    assert open(other, "rb").read() != open(picture, "rb").read()


def test_bad_map_requests_get_a_message_and_the_server_serves_on(client, scene_png, tmp_path):
    path, scene = scene_png
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:60])
    for args, said in [((handle_file(str(path)), "", "chefer", ""), "Type the text"),
                       ((handle_file(str(path)), "a red star", "saliency", ""), "Unknown map method"),
                       ((handle_file(str(broken)), "a red star", "chefer", ""), "broken.png"),
                       ((None, "a red star", "tokens", ""), "image first")]:
        with pytest.raises(AppError, match=said):
            client.predict(*args, api_name="/explain_image_text")
    picture, _ = client.predict(handle_file(str(path)), "a red star", "tokens", "", api_name="/explain_image_text")
    assert Image.open(picture).size == (maps.OVERLAY_PIXELS, maps.OVERLAY_PIXELS)


def test_explain_audio_text_through_the_api(client, tone_after_silence, scene_png, tmp_path):
    path, text, _ = tone_after_silence
    plot, notes = client.predict(handle_file(str(path)), text, "", api_name="/explain_audio_text")
    figure = json.loads(plot["plot"])
    assert [t["type"] for t in figure["data"]] == ["heatmap", "bar", "bar"]
    assert text in notes
    # The templates a match used: the same embedding, so the same cosine as match_audio's.
    _, templated = client.predict(handle_file(str(path)), text, "the sound of {}", api_name="/explain_audio_text")
    assert templated != notes
    short = tmp_path / "blip.wav"
    sf.write(short, np.sin(np.arange(200) / 3).astype(np.float32), sounds.SAMPLE_RATE)  # 12 ms
    plot, _ = client.predict(handle_file(str(short)), text, "", api_name="/explain_audio_text")
    assert plot["type"] == "plotly"
    with pytest.raises(AppError, match="Upload or record"):
        client.predict(None, text, "", api_name="/explain_audio_text")
    with pytest.raises(AppError, match="not a readable audio file"):
        client.predict(handle_file(str(scene_png[0])), text, "", api_name="/explain_audio_text")
    with pytest.raises(AppError, match="Type the text"):
        client.predict(handle_file(str(path)), "", "", api_name="/explain_audio_text")


def test_cli_eval_reports_the_peak_in_box_rate(capsys):
    import json

    from mmdemo.cli import main

    assert main(["eval", "--only", "saliency", "--n", "60", "--seed", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["saliency"]
    assert out["n"] == 60 and 0.05 < out["chance"] < 0.2
    assert out["chefer"] >= 0.75 and out["tokens"] > out["chance"]
    assert main(["eval", "--only", "saliency", "--write-card"]) == 2
