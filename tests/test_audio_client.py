"""The Audio tab's API through gradio_client on the shipped tiny bundle, odd uploads included."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.toyworld import sounds as S

SR = S.SAMPLE_RATE
LABELS = "a rising chirp\na falling chirp\na burst of white noise\na low sine tone"
SCIPY_WAVS = sorted((Path(scipy.__file__).parent / "io" / "tests" / "data").glob("*.wav"))
# What load_audio can't decode in scipy's corpus, and why (checked by the message).
UNREADABLE = {"1234Hz": "sample rate of 1234 Hz", "early-eof-no-data": "not a readable audio file",
              "incomplete-chunk": "not a readable audio file", "36bit": "not a readable audio file",
              "45bit": "not a readable audio file", "53bit": "not a readable audio file",
              "64bit.wav": "not a readable audio file"}


def sound(kind, variant, seconds=3.0, seed=1):
    return S.render_sound(S.SoundSpec((S.SoundEvent(kind, variant, seconds, 0.0),), True, seed))


def write(path, wave, sr=SR, subtype="PCM_16", fmt="WAV", **kw):
    sf.write(path, wave, sr, subtype=subtype, format=fmt, **kw)
    return path


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


def top_label(result):
    ranked = result[0]
    return ranked["label"], {c["label"]: c["confidence"] for c in ranked["confidences"]}


def match(client, path, labels=LABELS, templates=""):
    return client.predict(handle_file(str(path)), labels, templates, api_name="/match_audio")


def test_endpoints_are_named(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/match_audio", "/search_audio", "/search_texts_by_audio", "/audio_example_clip"} <= names


def test_example_clip_is_eight_seconds_of_two_sounds(client):
    path = client.predict(api_name="/audio_example_clip")
    assert sf.info(path).duration == pytest.approx(8.0, abs=0.05)
    assert top_label(match(client, path))[0] in ("a rising chirp", "a burst of white noise")


def test_match_ranks_the_right_label_with_pictures_and_windows(client, tmp_path):
    long = np.concatenate([sound("chirp", "rising", 4.0), sound("noise", "white", 4.0)])
    # Stereo 44.1 kHz 24-bit: mixed to mono and resampled before the model hears it.
    stereo = np.stack([long, long], axis=1)
    import soxr
    path = write(tmp_path / "two sounds.wav", soxr.resample(stereo, SR, 44100), 44100, "PCM_24")
    ranked, summary, heard, timeline, table = match(client, path, templates="the sound of {}\na recording of {}")
    assert ranked["label"] in ("a rising chirp", "a burst of white noise")
    assert "8.0 s (44.1 kHz, 2 channels)" in summary and "3 window(s)" in summary
    windows = {row[1]: row[4] for row in table["data"]}
    assert windows["a rising chirp"] == "0.0–4.0 s" and windows["a burst of white noise"] == "4.0–8.0 s"
    assert heard and timeline  # plotly figures arrive as JSON


@pytest.mark.parametrize("subtype,sr,channels", [("PCM_U8", 8000, 1), ("PCM_24", 96000, 6), ("PCM_32", 22050, 2),
                                                  ("FLOAT", 48000, 4), ("DOUBLE", 11025, 3)])
def test_odd_wav_formats_still_rank_the_chirp_first(client, tmp_path, subtype, sr, channels):
    import soxr
    wave = soxr.resample(sound("chirp", "rising"), SR, sr)
    path = write(tmp_path / f"chirp-{subtype}.wav", np.repeat(wave[:, None], channels, axis=1), sr, subtype)
    label, scores = top_label(match(client, path))
    assert label == "a rising chirp" and scores[label] > 0.5


def test_big_endian_and_flac(client, tmp_path):
    path = write(tmp_path / "be.aiff", sound("noise", "white"), fmt="AIFF")  # AIFF is big-endian PCM
    assert top_label(match(client, path))[0] == "a burst of white noise"
    path = write(tmp_path / "tone.flac", sound("tone", "low sine"), fmt="FLAC")
    assert top_label(match(client, path))[0] == "a low sine tone"


@pytest.mark.parametrize("path", SCIPY_WAVS, ids=lambda p: p.name)
def test_scipy_wav_corpus_gets_a_result_or_a_clear_message(client, path):
    reason = next((msg for key, msg in UNREADABLE.items() if key in path.name), None)
    if reason is None:
        label, scores = top_label(match(client, path))
        assert len(scores) == 4 and abs(sum(scores.values()) - 1) < 1e-3
    else:
        with pytest.raises(AppError, match=reason):
            match(client, path)


def test_broken_uploads_are_clear_errors_and_the_server_keeps_serving(client, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty"):
        match(client, empty)
    text = tmp_path / "notes.wav"
    text.write_text("just some text, not audio\n" * 40)
    with pytest.raises(AppError, match="not a readable audio file"):
        match(client, text)
    good = write(tmp_path / "full.wav", sound("chirp", "falling"))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AppError, match="not a readable audio file"):
        match(client, cut)
    fake_mp3 = tmp_path / "song.mp3"
    fake_mp3.write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 8)
    with pytest.raises(AppError, match="not a readable audio file"):
        match(client, fake_mp3)
    assert top_label(match(client, good))[0] == "a falling chirp"


def test_silent_nan_and_overlong_clips_still_give_results(client, tmp_path):
    silent = write(tmp_path / "silence.wav", np.zeros(SR, np.float32))
    assert len(top_label(match(client, silent))[1]) == 4
    wave = sound("chirp", "rising")
    wave[:200] = np.nan  # a damaged stretch, as a broken float recorder writes
    wave[8000:8010] = np.inf
    nan = write(tmp_path / "nan.wav", wave, subtype="FLOAT")
    assert top_label(match(client, nan))[0] == "a rising chirp"
    long = write(tmp_path / "long.wav", np.tile(sound("noise", "white", 4.0), 18)[:: 2], 8000)  # 72 s at 8 kHz
    summary = match(client, long)[1]
    assert "60.0 s" in summary and "29 window(s)" in summary


def test_label_list_problems(client, tmp_path):
    path = write(tmp_path / "c.wav", sound("chirp", "rising"))
    with pytest.raises(AppError, match="at least one label"):
        match(client, path, labels="\n  \n")
    with pytest.raises(AppError, match="Too many labels"):
        match(client, path, labels="\n".join(f"label {i}" for i in range(101)))
    with pytest.raises(AppError, match="exactly once"):
        match(client, path, templates="the sound of")
    with pytest.raises(AppError, match="Upload or record"):
        client.predict(None, LABELS, "", api_name="/match_audio")


def test_search_default_gallery_plays_the_best_match(client):
    from mmdemo.settings import Settings
    from mmdemo.tasks.audio import default_gallery_files
    from tests.helpers.galleries import unique_caption

    name, caption = unique_caption(default_gallery_files(Settings().cache_dir))  # the app's own examples
    table, *players = client.predict(caption, 5, None, api_name="/search_audio")
    assert table["data"][0][1] == name and table["data"][0][3] == caption
    assert len(table["data"]) == 5
    best = players[0]
    assert best["visible"] and Path(best["value"]).stat().st_size > 1000
    info = sf.info(best["value"])
    assert info.duration > 0.5


def test_search_uploaded_sounds_and_zip(client, tmp_path):
    files = [write(tmp_path / "up.wav", sound("chirp", "rising", 2.0)),
             write(tmp_path / "hiss.wav", sound("noise", "white", 2.0)),
             write(tmp_path / "hum.wav", sound("tone", "low sine", 2.0))]
    table, *players = client.predict("a burst of white noise", 2, [handle_file(str(f)) for f in files],
                                     api_name="/search_audio")
    assert [row[1] for row in table["data"]][0] == "hiss.wav" and len(table["data"]) == 2
    assert players[2]["visible"] is False
    z = tmp_path / "sounds.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in files:
            zf.write(f, f"clips/{f.name}")
    table, *_ = client.predict("a rising chirp", 3, [handle_file(str(z))], api_name="/search_audio")
    assert table["data"][0][1] == "up.wav"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(AppError, match="not a valid zip"):
        client.predict("a rising chirp", 3, [handle_file(str(bad))], api_name="/search_audio")
    with pytest.raises(AppError, match="Type what to search"):
        client.predict("   ", 3, None, api_name="/search_audio")


def test_search_texts_by_audio(client, tmp_path):
    path = write(tmp_path / "clicks.wav", sound("clicks", "fast"))
    texts = "\n".join(S.sound_classes())
    table = client.predict(handle_file(str(path)), texts, 3, api_name="/search_texts_by_audio")
    assert table["data"][0][1] == "a series of fast clicks" and len(table["data"]) == 3
    with pytest.raises(AppError, match="at least one text"):
        client.predict(handle_file(str(path)), "", 3, api_name="/search_texts_by_audio")
