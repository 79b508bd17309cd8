"""Every endpoint of every tab through gradio_client on the ``real`` test profile: every
real backend (open_clip CLIP from a local-dir:, CoCa from a file with open_clip's BPE
tokenizer, CLAP from a hand-made Hugging Face cache, offline) with random tiny weights.

Random weights make the answers meaningless, so what is asserted is that each real code
path runs and returns well-formed results: types, shapes, counts, label sets,
probabilities summing to 1, files that exist and open, the notices and refusals a user
would get. Audio's bad-input corpus runs on this app too, in tests/test_audio_client.py.
"""

import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.helpers.datasets import write_dataset
from tests.helpers.outputs import confidences, layout_text, plotly_traces, predict_with_warnings

RUN = f"r{os.getpid()}"  # head names unique to this run; files removed at the end
CAPTION = dict(method="beam", num_beams=3, max_length=12, temperature=1.0, top_k=10, top_p=0.9, num_captions=1, seed=0)
CLAP_SOURCE = "hf-hub:mmdemo-test/tiny-clap"
SOUND_LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone"]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def client(real_app):
    from mmdemo.settings import Settings

    yield Client(real_app[1], verbose=False)

    for f in (Path(Settings().cache_dir) / "heads").glob(f"*{RUN}*.safetensors"):
        f.unlink()


@pytest.fixture(scope="module")
def scenes():
    """The app's example scenes (what the Image tab offers): [path]."""
    from mmdemo.settings import Settings
    from mmdemo.tasks.image import default_gallery_files

    folder = default_gallery_files(Settings().cache_dir)
    return sorted(p for p in folder.iterdir() if p.suffix == ".png")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos nobody here made (scikit-image's), as a user uploads them."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    out = []
    for name in ("astronaut", "chelsea", "coffee"):
        out.append(root / f"{name}.jpg")
        Image.fromarray(getattr(data, name)()).save(out[-1], quality=90)
    return out


@pytest.fixture(scope="module")
def clip_16k(tmp_path_factory):
    """Three seconds of a chirp at 16 kHz: resampled to CLAP's 48 kHz by the loader."""
    from mmdemo.toyworld import sounds as S

    wave = S.render_sound(S.SoundSpec((S.SoundEvent("chirp", "rising", 3.0, 0.0),), True, 1))
    path = tmp_path_factory.mktemp("clips") / "chirp.wav"
    sf.write(path, wave, S.SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def av_dataset(tmp_path_factory):
    """A CSV with image,text,audio,label columns beside its media, as a user makes one."""
    return write_dataset(tmp_path_factory.mktemp("av-data"), "scene_sound_match", n=40, seed=5)


def upload_of(csv_path: Path) -> list:
    return [handle_file(str(csv_path))] + [handle_file(str(p)) for p in sorted((csv_path.parent / "media").iterdir())]


def assert_probabilities(label_out, labels=None, *, top=None) -> dict:
    """Probabilities of ``labels`` summing to 1; where the Label shows only the ``top`` best, at most 1."""
    scores = confidences(label_out)
    assert all(0.0 <= p <= 1.0 for p in scores.values()), scores
    if top is None:
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    else:
        assert len(scores) == top and sum(scores.values()) <= 1.0 + 1e-6
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert label_out["label"] == next(iter(scores))  # the top label is the one shown first
    if labels is not None:
        assert set(scores) == set(labels)
    return scores


def assert_ranked_rows(table, n):
    rows = table["data"]
    assert [r[0] for r in rows] == list(range(1, n + 1))
    scores = [r[2] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    return rows


def status(client) -> dict[str, list]:
    table, _ = client.predict(api_name="/models_status")
    return {row[0]: row for row in table["data"]}


def caption(client, path, **options):
    o = {**CAPTION, **options}
    return client.predict(handle_file(str(path)), o["method"], o["num_beams"], o["max_length"], o["temperature"],
                          o["top_k"], o["top_p"], o["num_captions"], o["seed"], api_name="/caption")


# --------------------------------------------------------------------------- the endpoint list


def test_every_endpoint_is_driven_here(client):
    """A new endpoint without a real-profile test fails here: each must be called in this file."""
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    called = set(re.findall(r'api_name="(/\w+)"', Path(__file__).read_text()))
    assert names == called


# --------------------------------------------------------------------------- Image tab


@pytest.mark.parametrize("method", ["beam", "greedy", "top_k", "top_p"])
def test_caption_with_every_decoding_method(client, scenes, photos, method):
    n = 1 if method == "greedy" else 2  # greedy decoding has one answer
    for path in (scenes[0], photos[0]):
        text, notes = caption(client, path, method=method, num_beams=3, num_captions=n, seed=3)
        lines = text.splitlines()
        assert isinstance(text, str) and 1 <= len(lines) <= n, text
        assert isinstance(notes, str)


def test_caption_refusals(client, scenes):
    with pytest.raises(AppError, match="(?i)beam"):
        caption(client, scenes[0], num_beams=2, num_captions=5)
    with pytest.raises(AppError, match="Upload, paste or pick an image"):
        client.predict(None, *CAPTION.values(), api_name="/caption")


def test_rank_captions_and_the_caption_bank(client, photos):
    candidates = ["a photo of an astronaut", "a cat", "a cup of coffee", "a red diamond"]
    label, plot, notes = client.predict(handle_file(str(photos[0])), "\n".join(candidates), api_name="/rank_captions")
    assert_probabilities(label, candidates)
    bars = plotly_traces(plot)[0]
    assert bars["type"] == "bar" and len(bars["y"]) == 4
    assert list(bars["x"]) == sorted(bars["x"], reverse=True)
    assert "Ranked captions (4 candidates)" in layout_text(plot)
    bank, _, _ = client.predict(handle_file(str(photos[1])), "  \n ", api_name="/rank_captions")
    assert_probabilities(bank, top=5)  # the built-in caption bank, its best 5 shown


def test_long_captions_are_truncated_by_the_real_tokenizer(client, photos):
    # The tiny CLIP's context is 16 BPE tokens: open_clip's tokenizer cuts, the app says so.
    long = "a photo of an astronaut " + " ".join(["standing beside a flag on a sunny afternoon"] * 4)
    label, _, notes = client.predict(handle_file(str(photos[0])), f"{long}\na cat", api_name="/rank_captions")
    assert len(assert_probabilities(label)) == 2
    assert "context length" in notes and "truncated" in notes


def test_search_images_and_the_embedding_map(client, scenes):
    shown, table, notes = client.predict("a red diamond", 5, None, api_name="/search_images")
    rows = assert_ranked_rows(table, 5)
    assert len(shown) == 5
    assert {r[1] for r in rows} <= {p.name for p in scenes}
    for item, row in zip(shown, rows):
        assert re.match(rf"^#\d · -?\d\.\d{{3}} · {re.escape(row[1])}$", item["caption"]), item["caption"]
        with Image.open(item["image"]) as im:  # a thumbnail file the client downloaded
            assert max(im.size) <= 384
    plot = client.predict("a red diamond", 5, api_name="/embedding_map")
    by_name = {t["name"]: t for t in plotly_traces(plot)}
    assert len(by_name["top result"]["x"]) == 5
    assert len(by_name["gallery image"]["x"]) + 5 == len(scenes)
    assert by_name["query"]["text"] == ["a red diamond"]
    assert np.isfinite(np.concatenate([by_name["gallery image"]["x"], by_name["gallery image"]["y"]])).all()


def test_search_uploaded_photos_and_a_zip(client, photos, tmp_path):
    shown, table, _ = client.predict("a cat", 3, [handle_file(str(p)) for p in photos], api_name="/search_images")
    assert {r[1] for r in assert_ranked_rows(table, 3)} == {p.name for p in photos}
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in photos:
            zf.write(p, f"holiday/{p.name}")
    _, table, _ = client.predict("a cat", 2, [handle_file(str(z))], api_name="/search_images")
    assert {r[1] for r in assert_ranked_rows(table, 2)} <= {p.name for p in photos}
    plot = client.predict("a cat", 2, api_name="/embedding_map")  # this session's zip gallery
    assert sum(len(t["x"]) for t in plotly_traces(plot) if t["name"] != "query") == 3


def test_search_texts_and_the_heatmap(client, scenes, photos):
    texts = ["a photo of an astronaut", "a cat", "a cup of coffee", "a red diamond", "a blue star"]
    table, notes = client.predict(handle_file(str(photos[0])), "\n".join(texts), 3, api_name="/search_texts")
    assert {r[1] for r in assert_ranked_rows(table, 3)} <= set(texts)
    plot = client.predict(handle_file(str(photos[0])), [handle_file(str(p)) for p in (photos[1], scenes[0])],
                          "\n".join(texts), api_name="/similarity_heatmap")
    heat = plotly_traces(plot)[0]
    z = np.asarray(heat["z"], float)
    assert heat["type"] == "heatmap" and z.shape == (3, 5)
    assert np.all(np.abs(z) <= 1.0001)
    assert "3 image(s) x 5 text(s)" in layout_text(plot)


def test_unreadable_images_are_clear_errors_and_the_server_keeps_serving(client, photos, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.jpg"
    notes.write_text("just some text, not a picture\n" * 50)
    for path, message in ((empty, "empty"), (notes, "not a readable image")):
        with pytest.raises(AppError, match=message):
            caption(client, path)
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(path)), "a cat\na dog", api_name="/rank_captions")
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(path)), "a cat\na dog", 2, api_name="/search_texts")
    label, _, _ = client.predict(handle_file(str(photos[1])), "a cat\na dog", api_name="/rank_captions")
    assert_probabilities(label, ["a cat", "a dog"])


# --------------------------------------------------------------------------- Audio tab


def test_example_clip_matches_in_one_clap_window(client):
    path = client.predict(api_name="/audio_example_clip")
    assert sf.info(path).duration == pytest.approx(8.0, abs=0.05)
    ranked, summary, heard, timeline, table = client.predict(handle_file(path), "\n".join(SOUND_LABELS), "",
                                                             api_name="/match_audio")
    assert_probabilities(ranked, SOUND_LABELS)
    # CLAP hears 10 s at 48 kHz: the 8 s example is one window, resampled from 16 kHz.
    assert "8.0 s (16 kHz, 1 channel) → mono 48 kHz, 1 window(s)" in summary
    rows = table["data"]
    assert {r[1] for r in rows} == set(SOUND_LABELS) and all(r[4] == "0.0–8.0 s" for r in rows)
    assert sum(r[2] for r in rows) == pytest.approx(1.0, abs=1e-3)
    mel = next(t for t in plotly_traces(heard) if t["type"] == "heatmap")
    assert np.asarray(mel["z"]).shape[0] == 64  # the tiny CLAP's 64 mel bands
    assert "Log-mel the model heard in 0.0–8.0 s" in layout_text(heard)
    lines = plotly_traces(timeline)
    assert {t["name"] for t in lines} == set(SOUND_LABELS) and all(len(t["y"]) == 1 for t in lines)


def test_a_long_stereo_clip_is_windowed_with_templates(client, tmp_path):
    import soxr

    from mmdemo.toyworld import sounds as S

    wave = S.render_sound(S.SoundSpec((S.SoundEvent("noise", "white", 25.0, 0.0),), True, 2))
    stereo = soxr.resample(np.stack([wave, wave[::-1]], axis=1), S.SAMPLE_RATE, 44100)
    path = tmp_path / "long stereo.wav"
    sf.write(path, stereo, 44100, subtype="PCM_16")  # 4.4 MB: under the app's 5 MB upload limit
    ranked, summary, _, timeline, table = client.predict(
        handle_file(str(path)), "\n".join(SOUND_LABELS), "the sound of {}\na recording of {}", api_name="/match_audio")
    assert_probabilities(ranked, SOUND_LABELS)
    # 25 s in 10 s windows every 2 s, the last one aligned to the end: 0, 2, ..., 14, 15.
    assert "25.0 s (44.1 kHz, 2 channels)" in summary and "9 window(s)" in summary
    assert "“the sound of {}”, “a recording of {}”" in summary
    assert all(len(t["y"]) == 9 for t in plotly_traces(timeline))
    for row in table["data"]:
        start, end = (float(x) for x in row[4].removesuffix(" s").split("–"))
        assert end - start == pytest.approx(10.0) and 0 <= start <= 15


def test_search_audio_default_gallery_and_uploads(client, clip_16k, tmp_path):
    from mmdemo.settings import Settings
    from mmdemo.tasks.audio import default_gallery_files

    folder = default_gallery_files(Settings().cache_dir)
    table, *players = client.predict("a rising chirp", 5, None, api_name="/search_audio")
    rows = assert_ranked_rows(table, 5)
    assert {r[1] for r in rows} <= {p.name for p in folder.iterdir()}
    assert [p["visible"] for p in players] == [True, True, True]
    for p in players:
        info = sf.info(p["value"])
        assert info.duration > 0.5
    other = tmp_path / "tone.flac"
    sf.write(other, np.sin(np.linspace(0, 2000, 32000)).astype(np.float32) * 0.3, 16000, format="FLAC")
    table, *players = client.predict("a rising chirp", 5, [handle_file(str(clip_16k)), handle_file(str(other))],
                                     api_name="/search_audio")
    assert {r[1] for r in assert_ranked_rows(table, 2)} == {"chirp.wav", "tone.flac"}
    assert [p["visible"] for p in players] == [True, True, False]
    z = tmp_path / "sounds.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(clip_16k, "clips/chirp.wav")
    table, *_ = client.predict("a chirp", 3, [handle_file(str(z))], api_name="/search_audio")
    assert [r[1] for r in table["data"]] == ["chirp.wav"]


def test_search_texts_by_audio(client, clip_16k):
    texts = SOUND_LABELS + ["a major chord", "a series of fast clicks"]
    table = client.predict(handle_file(str(clip_16k)), "\n".join(texts), 3, api_name="/search_texts_by_audio")
    assert {r[1] for r in assert_ranked_rows(table, 3)} <= set(texts)
    with pytest.raises(AppError, match="at least one text"):
        client.predict(handle_file(str(clip_16k)), "", 3, api_name="/search_texts_by_audio")


def test_models_tab_lists_the_clap_loaded_from_the_hub_cache_after_an_audio_request(client, clip_16k):
    client.predict(handle_file(str(clip_16k)), "a chirp\na tone", "", api_name="/match_audio")
    row = status(client)["hub-clap"]
    assert row[1:4] == ["audio", "loaded", "cpu"]
    assert CLAP_SOURCE in row[8] and int(row[5].replace(",", "")) > 100_000 and row[9] == ""


# --------------------------------------------------------------------------- Classify tab


def test_zero_shot_with_image_text_and_audio(client, photos, clip_16k):
    labels = ["an astronaut", "a cat", "a chirp", "coffee"]
    label, info, plot = client.predict(handle_file(str(photos[0])), "a person in a space suit",
                                       handle_file(str(clip_16k)), "\n".join(labels), "a photo of {}", 1.0, 0.5, 0.5,
                                       api_name="/classify_zero_shot")
    assert_probabilities(label, labels)
    assert "image 0.50, text 0.25, audio 0.25" in info and "“a photo of an astronaut”" in info
    bars = {t["name"]: t for t in plotly_traces(plot)}
    assert set(bars) == {"fused", "image alone (weight 0.50)", "text alone (weight 0.25)", "audio alone (weight 0.25)"}
    for t in bars.values():
        assert sorted(t["x"]) == sorted(labels) and sum(t["y"]) == pytest.approx(1.0, abs=1e-3)
    audio_only, info, _ = client.predict(None, "", handle_file(str(clip_16k)), "\n".join(labels), "{}", 0, 0, 1,
                                         api_name="/classify_zero_shot")
    assert_probabilities(audio_only, labels) and "audio 1.00" in info


def test_zero_shot_refusals_and_warnings(client, photos, tmp_path):
    from mmdemo.toyworld import sounds as S

    long = tmp_path / "long.wav"  # 40 s: Classify hears the first 30 s
    sf.write(long, np.tile(S.render_sound(S.SoundSpec((S.SoundEvent("tone", "low sine", 4.0, 0.0),), True, 1)), 10),
             S.SAMPLE_RATE)
    (label, info, _), warnings = predict_with_warnings(client, None, "", handle_file(str(long)), "a tone\na chirp",
                                                       "{}", 1, 1, 1, api_name="/classify_zero_shot")
    assert_probabilities(label, ["a tone", "a chirp"]) and "audio 1.00" in info
    assert any("'long.wav' is longer than 30 s" in w for w in warnings), warnings
    image = handle_file(str(photos[0]))
    with pytest.raises(AppError, match="Enter at least one label"):
        client.predict(image, "", None, " \n ", "a {}", 1, 1, 1, api_name="/classify_zero_shot")
    with pytest.raises(AppError, match="Too many labels"):
        client.predict(image, "", None, "\n".join(f"label {i}" for i in range(101)), "a {}", 1, 1, 1,
                       api_name="/classify_zero_shot")
    with pytest.raises(AppError, match="exactly once"):
        client.predict(image, "", None, "a\nb", "a photo", 1, 1, 1, api_name="/classify_zero_shot")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty"):
        client.predict(image, "", handle_file(str(empty)), "a\nb", "a {}", 1, 1, 1, api_name="/classify_zero_shot")


def test_train_on_image_text_audio_csv_then_classify_with_it(client, av_dataset):
    """CLIP image/text (32-d) and CLAP audio (16-d) features in one head."""
    name = f"av-head-{RUN}"
    state, chart, board, confusion, download, head = client.predict(
        upload_of(av_dataset), ["concat", "gated", "attention"], 3, 0.001, name, True, api_name="/train_heads")
    assert f"Saved as **{name}**" in state and "40 examples (32 train / 8 validation)" in state
    assert "inputs image + text + audio" in state
    by_head = {r[1]: r for r in board["data"]}
    assert set(by_head) == {"concat", "gated", "attention", "image only (baseline)", "text only (baseline)",
                            "audio only (baseline)"}
    assert by_head["gated"][2] == "image + text + audio" and all(0 <= r[3] <= 1 for r in board["data"])
    assert Path(download).name == f"{name}.safetensors" and Path(download).stat().st_size > 1000
    assert head["value"] == name
    z = np.asarray(plotly_traces(confusion)[0]["z"])
    assert z.shape == (4, 4) and z.sum() == 8  # every validation example once
    media = av_dataset.parent / "media"
    label, info, ablation, explain = client.predict(name, handle_file(str(media / "0.png")), "a red star",
                                                    handle_file(str(media / "0.wav")), api_name="/classify")
    assert_probabilities(label, ["match", "image mismatch", "sound mismatch", "both mismatch"])
    assert name in info and "without audio" in info
    assert [t["name"] for t in plotly_traces(ablation)] == ["all inputs", "without image", "without text",
                                                            "without audio"]
    with pytest.raises(AppError, match="add the missing audio"):
        client.predict(name, handle_file(str(media / "0.png")), "a red star", None, api_name="/classify")
    # The downloaded file goes back in under another name, and classifies the same.
    added, head = client.predict(handle_file(download), f"again-{RUN}", api_name="/upload_head")
    assert "Added" in added and head["value"] == f"again-{RUN}"
    again, *_ = client.predict(f"again-{RUN}", handle_file(str(media / "0.png")), "a red star",
                               handle_file(str(media / "0.wav")), api_name="/classify")
    assert confidences(again) == pytest.approx(confidences(label))


def test_a_broken_clip_in_the_training_data_names_its_row(client, av_dataset, tmp_path):
    files = upload_of(av_dataset)
    broken = tmp_path / "1.wav"  # the same name as row 3's clip, so it replaces that one
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nothing more")
    files = [f for f in files if not str(f["path"]).endswith("/1.wav")] + [handle_file(str(broken))]
    with pytest.raises(AppError, match=r"row 3: .*not a readable audio file"):
        client.predict(files, ["concat"], 2, 0.001, f"bad-{RUN}", False, api_name="/train_heads")


def test_train_on_a_generated_task(client):
    name = f"gen-head-{RUN}"
    state, _, board, _, download, head = client.predict("scene_qa", 100, ["concat"], 2, 0.001, name, False,
                                                        api_name="/train_generated")
    assert f"Saved as **{name}**" in state and "inputs image + text" in state
    assert [r[1] for r in board["data"]] == ["concat"] and head["value"] == name
    # Cancelling mid-run is the same code on every backend (tests/test_classify_client.py).
    assert client.predict(api_name="/cancel_training") == "Nothing is training right now."


def test_heads_trained_on_other_encoders_are_refused(client, photos):
    from mmdemo.paths import TINY_BUNDLE_DIR

    bundled = TINY_BUNDLE_DIR / "heads" / "scene_qa-concat.safetensors"
    with pytest.raises(AppError, match=r"trained on clip encoder '[^']+', but profile 'real' uses .*retrain it"):
        client.predict(handle_file(str(bundled)), f"tiny-{RUN}", api_name="/upload_head")
    # The bundled head's catalog entry is listed, but refused under these encoders, by name.
    with pytest.raises(AppError, match="tiny-head-scene_qa-gated.*trained on clip encoder"):
        client.predict("tiny-head-scene_qa-gated", handle_file(str(photos[0])), "is there a red star?", None,
                       api_name="/classify")


# --------------------------------------------------------------------------- Models tab


def test_models_tab_loads_and_unloads_real_backends(client):
    table, info = client.predict("dir-clap", api_name="/load_model")
    row = next(r for r in table["data"] if r[0] == "dir-clap")
    assert row[1:4] == ["audio", "loaded", "cpu"] and "local-dir:" in row[8]
    assert "Profile:** `real`" in info
    assert status(client)["dir-clap"][2] == "loaded"
    table, _ = client.predict("dir-clap", api_name="/unload_model")
    assert next(r for r in table["data"] if r[0] == "dir-clap")[2] == "not loaded"


@pytest.mark.parametrize("entry, message", [
    ("corrupt-clap", "Could not load CLAP model 'corrupt-clap' from local-dir:"),
    ("missing-clap", "CLAP folder for 'missing-clap' not found"),
], ids=["corrupt", "missing"])
def test_a_broken_clap_is_a_clear_error_and_the_other_tabs_keep_working(client, clip_16k, photos, entry, message):
    with pytest.raises(AppError, match=message) as err:
        client.predict(entry, api_name="/load_model")
    assert "Traceback" not in str(err.value) and "Something went wrong" not in str(err.value)
    assert status(client)[entry][2] == "failed"
    ranked, *_ = client.predict(handle_file(str(clip_16k)), "a chirp\na tone", "", api_name="/match_audio")
    assert_probabilities(ranked, ["a chirp", "a tone"])
    _, table, _ = client.predict("a cat", 2, [handle_file(str(p)) for p in photos], api_name="/search_images")
    assert len(table["data"]) == 2


def test_load_profile_loads_every_real_backend(client):
    table, info = client.predict(api_name="/load_profile")
    rows = {r[0]: r for r in table["data"]}
    for name, kind in (("dir-clip", "clip"), ("file-coca", "captioner"), ("hub-clap", "audio")):
        assert rows[name][1:3] == [kind, "loaded"], rows[name]
    assert "local-dir:" in rows["dir-clip"][8] and CLAP_SOURCE in rows["hub-clap"][8]
    assert rows["file-coca"][8].endswith("coca.safetensors")


def test_missing_or_broken_inputs_are_refused_before_any_model_loads(launch_app, test_catalog, tmp_path):
    """On a real profile a first load is a download: a click with nothing to work on must not start one."""
    from mmdemo.settings import Settings

    _, url = launch_app(Settings(profile="real", catalog=test_catalog, device="cpu", cache_dir=tmp_path))
    fresh = Client(url, verbose=False)
    refusals = [
        (lambda: fresh.predict(None, *CAPTION.values(), api_name="/caption"), "image"),
        (lambda: fresh.predict(None, "a cat\na dog", api_name="/rank_captions"), "image"),
        (lambda: fresh.predict(None, "a cat\na dog", 3, api_name="/search_texts"), "image"),
        (lambda: fresh.predict(None, "dog\ncat", "", api_name="/match_audio"), "audio"),
        (lambda: fresh.predict(None, "dog\ncat", 3, api_name="/search_texts_by_audio"), "audio"),
    ]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")  # a header cut short
    refusals.append((lambda: fresh.predict(handle_file(str(broken)), "dog\ncat", "", api_name="/match_audio"),
                     "broken.wav"))
    for call, what in refusals:
        with pytest.raises(AppError, match=re.compile(what, re.I)):
            call()
    loaded = [name for name, row in status(fresh).items() if row[2] != "not loaded"]
    assert loaded == []


# --------------------------------------------------------------------------- issue 15's endpoints


def test_why_it_matched_on_real_backends(client, photos, clip_16k):
    """The maps on a plain open_clip ViT (patchify, BPE tokenizer) and, by occlusion, on a CLAP."""
    for method in ("chefer", "tokens"):
        picture, notes = client.predict(handle_file(str(photos[1])), "a photo of a cat", method,
                                        "a photo of a cup\na photo of a person", api_name="/explain_image_text")
        assert Image.open(picture).size == (320, 320) and "cosine similarity" in notes
    plot, notes = client.predict(handle_file(str(clip_16k)), "a rising chirp", "This is a sound of {}.",
                                 api_name="/explain_audio_text")
    assert [t["type"] for t in plotly_traces(plot)] == ["heatmap", "bar", "bar"] and "a rising chirp" in notes


def test_compare_the_real_clip_and_coca_and_every_head(client, photos):
    summary, table, _, result = client.predict(handle_file(str(photos[0])), "a person\na cat\na cup",
                                               ["dir-clip", "file-coca"], "rank", api_name="/compare_models")
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"dir-clip", "file-coca"} and all(r["ok"] for r in rows.values()), result
    for r in rows.values():
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    # The bundled heads were trained on the tiny encoders: each is a row saying why it does not fit.
    _, table, _, result = client.predict(handle_file(str(photos[0])), "is there a red star?", None, [],
                                         api_name="/compare_heads")
    assert result["rows"] and all(not r["ok"] and r["error"] for r in result["rows"]
                                  if r["head"].startswith("tiny-head-"))


def test_a_folder_of_photos_zero_shot_on_the_real_clip(client, photos):
    table, files, status_md = client.predict([handle_file(str(p)) for p in photos], "zero_shot",
                                             "a person\na cat\na cup of coffee", "a photo of {}", "", "", "beam",
                                             20, api_name="/run_folder")
    assert [row[0] for row in table["data"]] == sorted(p.name for p in photos)
    assert all(row[1] in ("a person", "a cat", "a cup of coffee") and not row[4] for row in table["data"])
    assert sorted(Path(f).name for f in files) == ["results.csv", "results.json"]


def test_one_gallery_of_images_and_sounds_bridged_through_text(client):
    _, _, notes, table = client.predict("text", "a rising chirp", None, None, 12, None, api_name="/search_mixed")
    assert {row[1] for row in table["data"]} == {"image", "sound"} and "bridged through text" in notes
