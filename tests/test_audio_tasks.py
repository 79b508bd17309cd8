"""Audio task functions on the shipped tiny bundle: what a user of the Audio tab would see."""

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from mmdemo.errors import MMDemoError
from mmdemo.tasks import audio as A
from mmdemo.toyworld import sounds as S
from tests.helpers.galleries import unique_caption

SR = S.SAMPLE_RATE
LABELS = ["a rising chirp", "a falling chirp", "a burst of white noise", "a low sine tone", "a series of fast clicks"]


def sound(kind, variant, seconds=3.0, loud=True, seed=1):
    return S.render_sound(S.SoundSpec((S.SoundEvent(kind, variant, seconds, 0.0),), loud, seed))


def wav_bytes(wave, sr=SR, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_window_bounds_cover_the_clip_and_keep_the_tail():
    assert A.window_bounds(3 * SR, SR, 4.0) == [(0, 3 * SR)]
    b = A.window_bounds(9 * SR, SR, 4.0, 2.0)
    assert [s / SR for s, _ in b] == [0, 2, 4, 5]
    assert all(e - s == 4 * SR for s, e in b) and b[-1][1] == 9 * SR


def test_rising_chirp_ranks_its_label_first(audio):
    m = A.match_audio((SR, sound("chirp", "rising")), LABELS, audio)
    assert m.labels[0]["label"] == "a rising chirp"
    scores = {r["label"]: r["score"] for r in m.labels}
    assert scores["a rising chirp"] > 0.5
    assert scores["a rising chirp"] > scores["a falling chirp"]
    assert scores["a rising chirp"] > scores["a burst of white noise"]
    assert abs(sum(scores.values()) - 1) < 1e-5
    assert m.mel.shape[0] == 64 and len(m.windows) == 1


def test_prompt_templates_are_averaged_and_keep_the_ranking(audio):
    m = A.match_audio((SR, sound("noise", "white")), "\n".join(LABELS), audio,
                      templates="the sound of {}\na recording of {}")
    assert m.templates == ["the sound of {}", "a recording of {}"]
    assert m.labels[0]["label"] == "a burst of white noise"
    with pytest.raises(MMDemoError, match="must contain"):
        A.match_audio((SR, sound("noise", "white")), LABELS, audio, templates="no placeholder here")


def test_words_the_tiny_model_does_not_know_are_named(audio):
    m = A.match_audio((SR, sound("chirp", "rising")), ["a rising chirp", "a barking dog"], audio,
                      templates="the meow of {}")
    (notice,) = [n for n in m.notices if n.code == "words_unknown"]
    assert "'barking', 'dog', 'meow'" in notice and "does not know" in notice
    texts = A.search_texts_by_audio((SR, sound("chirp", "rising")), ["a rising chirp", "a cat"], audio)
    assert [n.subject for n in texts.notices if n.code == "words_unknown"] == ["cat"]
    plain = A.match_audio((SR, sound("chirp", "rising")), LABELS, audio)
    assert not [n for n in plain.notices if n.code == "words_unknown"]


def test_long_clip_shows_the_right_window_for_each_sound(audio):
    wave = np.concatenate([sound("chirp", "rising", 4.0), sound("noise", "white", 4.0, seed=2)])
    m = A.match_audio((SR, wave), LABELS, audio)
    assert len(m.windows) == 3 and m.windows[-1] == (4.0, 8.0)
    best = {b["label"]: b for b in m.best}
    assert best["a rising chirp"]["end"] <= 4.0
    assert best["a burst of white noise"]["start"] >= 4.0
    assert {m.labels[0]["label"], m.labels[1]["label"]} == {"a rising chirp", "a burst of white noise"}


def test_bad_label_lists_are_clear_errors(audio):
    clip = (SR, sound("chirp", "rising"))
    with pytest.raises(MMDemoError, match="at least one label"):
        A.match_audio(clip, "  \n ", audio)
    with pytest.raises(MMDemoError, match="Too many labels"):
        A.match_audio(clip, [f"label {i}" for i in range(A.MAX_LABELS + 1)], audio)
    with pytest.raises(MMDemoError, match="Upload or record"):
        A.match_audio(None, LABELS, audio)


def test_silent_and_nan_clips_give_a_result_and_a_warning(audio):
    m = A.match_audio((SR, np.zeros(SR, np.float32)), LABELS, audio)
    assert any("silent" in n for n in m.notices) and len(m.labels) == len(LABELS)
    wave = sound("chirp", "rising")
    wave[:100] = np.nan
    m = A.match_audio((SR, wave), LABELS, audio)
    assert any("NaN" in n for n in m.notices) and m.labels[0]["label"] == "a rising chirp"


def test_clip_over_the_duration_cap_is_cut_with_a_notice(audio):
    wave = np.tile(sound("chirp", "rising", 4.0), 3)
    m = A.match_audio((SR, wave), LABELS, audio, max_seconds=6.0)
    assert m.duration == pytest.approx(6.0) and any("longer than 6 s" in n for n in m.notices)


def test_search_texts_by_audio_ranks_the_description_first(audio):
    texts = [S.describe(S.SoundSpec((S.SoundEvent(k, v, 2.0, 0.0),), True, 0)) for k, v in S.EVENT_KEYS]
    # (Not a chord: the bundle hears a chord but tells major from minor only at chance.)
    res = A.search_texts_by_audio(wav_bytes(sound("chirp", "falling")), texts, audio, k=3, name="chirp.wav")
    assert res.hits[0]["label"] == "a loud falling chirp" and len(res.hits) == 3
    assert res.hits[0]["score"] >= res.hits[1]["score"]


def test_gallery_search_returns_the_matching_sound_first(audio, tmp_path):
    picks = {"up.wav": ("chirp", "rising"), "down.wav": ("chirp", "falling"), "hiss.wav": ("noise", "white"),
             "tick.wav": ("clicks", "fast"), "hum.wav": ("tone", "low sine")}
    for fname, (k, v) in picks.items():
        (tmp_path / fname).write_bytes(wav_bytes(sound(k, v, 2.0)))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00")
    (tmp_path / "captions.json").write_text(json.dumps({"hiss.wav": "white noise"}))
    cache = tmp_path / "cache"
    gallery = A.build_gallery([tmp_path], audio, cache_dir=cache)
    assert len(gallery) == 5 and any("Skipped 1 unreadable" in n for n in gallery.notices)
    assert [n.code for n in gallery.notices if "unreadable" in n] == ["files_unreadable"]
    for query, want in [("a falling chirp", "down.wav"), ("a burst of white noise", "hiss.wav"),
                        ("a series of fast clicks", "tick.wav")]:
        hits = A.search_gallery(gallery, query, audio, k=3)
        assert hits[0]["label"] == want and len(hits) == 3
    assert A.search_gallery(gallery, "a burst of white noise", audio)[0]["caption"] == "white noise"
    # A second build with the same files reuses the cached embeddings exactly.
    again = A.build_gallery([tmp_path], audio, cache_dir=cache)
    np.testing.assert_array_equal(again.embeddings, gallery.embeddings)
    with pytest.raises(MMDemoError, match="Type what to search"):
        A.search_gallery(gallery, "  ", audio)


def test_gallery_from_a_zip(audio, tmp_path):
    z = tmp_path / "sounds.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a/up.wav", wav_bytes(sound("chirp", "rising", 2.0)))
        zf.writestr("a/hiss.wav", wav_bytes(sound("noise", "white", 2.0)))
        zf.writestr("notes.txt", "not a sound")
    gallery = A.build_gallery(z, audio, extract_dir=tmp_path / "x")
    assert A.search_gallery(gallery, "a rising chirp", audio)[0]["label"] == "up.wav"
    assert any("not" in n for n in gallery.notices)


def test_gallery_with_nothing_readable_is_an_error(audio, tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 20)
    with pytest.raises(MMDemoError, match="None of the sounds could be read"):
        A.build_gallery([tmp_path], audio)


def test_default_gallery_exists_and_finds_a_chirp(audio, tmp_path):
    folder = A.default_gallery_files(tmp_path)
    gallery = A.build_gallery([folder], audio)
    assert len(gallery) >= 4 and all(item["caption"] for item in gallery.items)
    assert not gallery.notices  # its captions.json is not reported as a stray file
    name, caption = unique_caption(folder)
    assert A.search_gallery(gallery, caption, audio, k=1)[0]["label"] == name


def test_cli_match_and_search(tmp_path, capsys):
    from mmdemo.cli import main

    clip = tmp_path / "chirp.wav"
    clip.write_bytes(wav_bytes(sound("chirp", "rising")))
    (tmp_path / "hiss.wav").write_bytes(wav_bytes(sound("noise", "white")))
    assert main(["match-audio", str(clip), "white noise", "a rising chirp", "--template", "the sound of {}",
                 "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"][0]["label"] == "a rising chirp" and out["templates"] == ["the sound of {}"]
    assert main(["search-audio", str(tmp_path), "a burst of white noise", "--k", "1", "--device", "cpu"]) == 0
    assert "1. " in (text := capsys.readouterr().out) and "hiss.wav" in text and "chirp.wav" not in text
    assert main(["match-audio", str(tmp_path / "missing.wav"), "x", "--device", "cpu"]) == 2
    assert "was not found" in capsys.readouterr().err


def test_captions_file_in_either_layout(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps([{"file": "sounds/a.wav", "caption": "a rising chirp"},
                                                        {"path": "b.wav", "text": "a major chord"}, "junk"]))
    assert A.read_captions(tmp_path) == {"a.wav": "a rising chirp", "b.wav": "a major chord"}
    (tmp_path / "captions.json").write_text("{not json")
    assert A.read_captions(tmp_path) == {}
