"""The Audio tab's API through gradio_client, odd uploads included.

What the tiny bundle recognises is tested on it alone (``client``); everything the tab
refuses or warns about is tested on both the tiny bundle and the ``real`` test profile's
CLAP (``any_client``, with ``app`` naming which): random weights there, so only that
the answer is well formed, or the refusal clear, and the server still serving.
"""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mmdemo.toyworld import sounds as S
from tests.helpers.outputs import predict_with_warnings

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


# What differs between the apps: the window the audio model hears (tiny 4 s, CLAP 10 s,
# both every 2 s), hence the windows of a 60 s clip, and the rate clips are resampled to.
APPS = {"tiny": {"windows_60s": 29, "rate": "16 kHz"}, "real": {"windows_60s": 26, "rate": "48 kHz"}}


@pytest.fixture(scope="module")
def client(tiny_app):
    return Client(tiny_app[1], verbose=False)


@pytest.fixture(scope="module", params=list(APPS))
def app(request):
    return request.param


@pytest.fixture(scope="module")
def any_client(request, app):
    return Client(request.getfixturevalue(f"{app}_app")[1], verbose=False)


def top_label(result):
    """(top label, {label: probability}), checked well formed: every label ranked once, summing to 1."""
    ranked = result[0]
    scores = {c["label"]: c["confidence"] for c in ranked["confidences"]}
    assert ranked["label"] == next(iter(scores)) and abs(sum(scores.values()) - 1) < 1e-3, ranked
    assert all(0 <= p <= 1 for p in scores.values())
    return ranked["label"], scores


def match(client, path, labels=LABELS, templates=""):
    return client.predict(handle_file(str(path)), labels, templates, api_name="/match_audio")


def match_warned(client, path, labels=LABELS):
    """(result, the warnings the page shows as toasts)."""
    return predict_with_warnings(client, handle_file(str(path)), labels, "", api_name="/match_audio")


def test_speech_is_said_to_sound_unlike_the_world_and_a_generated_clip_is_not(client, tmp_path):
    """The notice's wiring, on one sentence espeak-ng speaks (.ci/run installs it); the
    share of speech flagged overall (1.0) is the model card's figure."""
    import shutil
    import subprocess

    unlike = "looks unlike anything the model was trained on"
    tone = write(tmp_path / "tone.wav", sound("tone", "mid sine"))
    _, warnings = match_warned(client, tone)
    assert not any(unlike in w for w in warnings)
    voice = tmp_path / "voice.wav"
    subprocess.run([shutil.which("espeak-ng"), "-v", "en", "-s", "150", "-w", str(voice),
                    "the quick brown fox jumps over the lazy dog"], check=True, capture_output=True)
    result, warnings = match_warned(client, voice)
    assert top_label(result)[0] and any(unlike in w for w in warnings)  # an answer, and the warning


def _plain(kind: str, hz, seconds: float = 2.0, peak_db: float = -6.0) -> np.ndarray:
    """Made here with plain numpy, neither generator's code: a sine at ``hz``, or the notes
    ``hz`` together (a chord), at a peak of ``peak_db`` dBFS."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(np.atleast_1d(hz)))
    x[:320] *= np.linspace(0, 1, 320)
    x[-320:] *= np.linspace(1, 0, 320)
    return (x / np.abs(x).max() * 10 ** (peak_db / 20)).astype(np.float32)


@pytest.mark.parametrize("hz,word", [(2640, "high"), (220, "low"), (600, "mid"), (90, "low"), (3500, "high")])
def test_pitch_words_mean_what_people_hear(client, tmp_path, hz, word):
    """A pure tone anywhere in a word's band gets that word (the previous bundle called a
    2,640 Hz sine "low": its words meant three narrow bands with gaps between)."""
    path = write(tmp_path / f"{hz}.wav", _plain("sine", hz))
    labels = "\n".join(f"a {p} sine tone" for p in ("low", "mid", "high"))
    assert top_label(match(client, path, labels))[0] == f"a {word} sine tone"


@pytest.mark.parametrize("name,notes", [("C major", (261.63, 329.63, 392.0)), ("F major", (174.61, 220.0, 261.63)),
                                        ("A minor", (220.0, 261.63, 329.63)), ("E minor", (329.63, 392.0, 493.88))])
def test_a_chord_is_heard_as_major_or_minor(client, tmp_path, name, notes):
    path = write(tmp_path / f"{name}.wav", _plain("chord", notes))
    top, _ = top_label(match(client, path, "a major chord\na minor chord"))
    assert top == f"a {name.split()[1]} chord"


@pytest.mark.parametrize("peak_db,word", [(-30, "quiet"), (-3, "loud")])
def test_loudness_words_follow_the_peak(client, tmp_path, peak_db, word):
    path = write(tmp_path / f"{peak_db}.wav", _plain("sine", 440.0, peak_db=peak_db), subtype="FLOAT")
    assert top_label(match(client, path, "a loud mid sine tone\na quiet mid sine tone"))[0] == f"a {word} mid sine tone"


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
                                                  ("FLOAT", 48000, 4), ("DOUBLE", 11025, 3), ("PCM_16", 44100, 5)])
def test_odd_wav_formats_are_mixed_and_resampled(any_client, app, tmp_path, subtype, sr, channels):
    import soxr
    wave = soxr.resample(sound("chirp", "rising"), SR, sr)
    path = write(tmp_path / f"chirp-{subtype}.wav", np.repeat(wave[:, None], channels, axis=1), sr, subtype)
    result = match(any_client, path)
    label, scores = top_label(result)
    assert set(scores) == set(LABELS.splitlines())
    src = f"{sr / 1000:g} kHz, {channels} channel{'s' if channels > 1 else ''}"
    assert f"3.0 s ({src}) → mono {APPS[app]['rate']}" in result[1]
    if app == "tiny":  # what the tiny bundle recognises
        assert label == "a rising chirp" and scores[label] > 0.5


def test_big_endian_and_flac(any_client, app, tmp_path):
    aiff = write(tmp_path / "be.aiff", sound("noise", "white"), fmt="AIFF")  # AIFF is big-endian PCM
    flac = write(tmp_path / "tone.flac", sound("tone", "low sine"), fmt="FLAC")
    labels = [top_label(match(any_client, p))[0] for p in (aiff, flac)]
    if app == "tiny":
        assert labels == ["a burst of white noise", "a low sine tone"]


@pytest.mark.parametrize("path", SCIPY_WAVS, ids=lambda p: p.name)
def test_scipy_wav_corpus_gets_a_result_or_a_clear_message(any_client, path):
    reason = next((msg for key, msg in UNREADABLE.items() if key in path.name), None)
    if reason is None:
        label, scores = top_label(match(any_client, path))
        assert len(scores) == 4
    else:
        with pytest.raises(AppError, match=reason):
            match(any_client, path)


def test_broken_uploads_are_clear_errors_and_the_server_keeps_serving(any_client, app, tmp_path):
    client = any_client
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
    headerless = tmp_path / "raw.wav"  # PCM samples with no RIFF header, as some recorders dump them
    headerless.write_bytes((sound("chirp", "falling") * 32767).astype("<i2").tobytes())
    with pytest.raises(AppError, match="not a readable audio file"):
        match(client, headerless)
    label, _ = top_label(match(client, good))
    if app == "tiny":
        assert label == "a falling chirp"


def test_silent_nan_and_overlong_clips_give_results_with_warnings(any_client, app, tmp_path):
    silent = write(tmp_path / "silence.wav", np.zeros(SR, np.float32))
    result, warnings = match_warned(any_client, silent)
    assert len(top_label(result)[1]) == 4
    assert any("'silence.wav' is silent" in w for w in warnings), warnings
    wave = sound("chirp", "rising")
    wave[:200] = np.nan  # a damaged stretch, as a broken float recorder writes
    wave[8000:8010] = np.inf
    nan = write(tmp_path / "nan.wav", wave, subtype="FLOAT")
    result, warnings = match_warned(any_client, nan)
    assert any("210 invalid (NaN/infinite) samples" in w for w in warnings), warnings
    label, _ = top_label(result)
    if app == "tiny":
        assert label == "a rising chirp"
    long = write(tmp_path / "long.wav", np.tile(sound("noise", "white", 4.0), 18)[:: 2], 8000)  # 72 s at 8 kHz
    result, warnings = match_warned(any_client, long)
    top_label(result)
    assert "60.0 s" in result[1] and f"{APPS[app]['windows_60s']} window(s)" in result[1]
    assert any("longer than 60 s; only the first 60 s are used" in w for w in warnings), warnings


def test_label_list_problems(any_client, tmp_path):
    client = any_client
    path = write(tmp_path / "c.wav", sound("chirp", "rising"))
    with pytest.raises(AppError, match="at least one label"):
        match(client, path, labels="\n  \n")
    with pytest.raises(AppError, match="Too many labels"):
        match(client, path, labels="\n".join(f"label {i}" for i in range(101)))
    with pytest.raises(AppError, match="exactly once"):
        match(client, path, templates="the sound of")
    with pytest.raises(AppError, match="Upload or record"):
        client.predict(None, LABELS, "", api_name="/match_audio")
    ranked, _, _, _, table = match(client, path, labels="\n".join(f"label {i}" for i in range(100)))
    assert len(ranked["confidences"]) == 10  # the most the page shows; the whole ranking is in the table
    assert sorted(row[1] for row in table["data"]) == sorted(f"label {i}" for i in range(100))
    assert abs(sum(row[2] for row in table["data"]) - 1) < 1e-2  # rounded to 4 places each


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


def test_bad_galleries_and_queries_are_refused_or_skipped(any_client, tmp_path):
    client = any_client
    good = write(tmp_path / "chirp.wav", sound("chirp", "rising", 2.0))
    long = write(tmp_path / "long.wav", np.tile(sound("noise", "white", 4.0), 10), SR)  # 40 s, over 30 s
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 50)
    (table, *players), warnings = predict_with_warnings(
        client, "a rising chirp", 5, [handle_file(str(f)) for f in (good, long, empty, text)], api_name="/search_audio")
    assert sorted(row[1] for row in table["data"]) == ["chirp.wav", "long.wav"]
    assert [p["visible"] for p in players] == [True, True, False]
    assert sf.info(players[1]["value"]).duration <= 30.0 + 1e-3  # the player has what was searched
    assert any("Skipped 2 unreadable sound(s)" in w for w in warnings), warnings
    assert any("'long.wav' is longer than 30 s" in w for w in warnings), warnings
    with pytest.raises(AppError, match="None of the sounds could be read"):
        client.predict("a rising chirp", 3, [handle_file(str(empty)), handle_file(str(text))],
                       api_name="/search_audio")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(AppError, match="not a valid zip"):
        client.predict("a rising chirp", 3, [handle_file(str(bad))], api_name="/search_audio")
    with pytest.raises(AppError, match="(?i)invalid file type"):  # gradio checks the suffix itself
        client.predict("a rising chirp", 3, [handle_file(str(write(tmp_path / "x.txt", sound("tone", "low sine"),
                                                                         fmt="WAV")))], api_name="/search_audio")
    with pytest.raises(AppError, match="Type what to search"):
        client.predict("   ", 3, None, api_name="/search_audio")
    with pytest.raises(AppError, match="at least one text"):
        client.predict(handle_file(str(good)), " \n ", 3, api_name="/search_texts_by_audio")
    with pytest.raises(AppError, match="Upload or record"):
        client.predict(None, "a chirp", 3, api_name="/search_texts_by_audio")
    table = client.predict(handle_file(str(good)), "a chirp\na hum", 2, api_name="/search_texts_by_audio")
    assert sorted(row[1] for row in table["data"]) == ["a chirp", "a hum"]  # still serving


def test_search_texts_by_audio(client, tmp_path):
    path = write(tmp_path / "clicks.wav", sound("clicks", "fast"))
    texts = "\n".join(S.sound_classes())
    table = client.predict(handle_file(str(path)), texts, 3, api_name="/search_texts_by_audio")
    assert table["data"][0][1] == "a series of fast clicks" and len(table["data"]) == 3
