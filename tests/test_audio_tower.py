"""What the tiny audio tower reads: a pitch picture fine enough to hear a chord's third,
the clip's peak level in dBFS, and (for an older tower) the mel rows alone."""

import numpy as np
import torch

from mmdemo.models import audio_tower as at

SR = at.SAMPLE_RATE


def _chord(third: float, root: float = 100 * 2 ** (33 / 24), seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, third, 2 ** (7 / 12))) / 3).astype(np.float32)


def _strongest_quarter_tones(wave: np.ndarray, k: int = 3) -> list[int]:
    mid = at.pitch_spectrum(wave)[:, 50]
    return sorted(int(i) for i in np.argsort(-mid)[:k])


def test_the_pitch_rows_tell_a_major_third_from_a_minor_one():
    major, minor = _chord(2 ** (4 / 12)), _chord(2 ** (3 / 12))  # equal-tempered, root on a quarter-tone
    (r1, t1, f1), (r2, t2, f2) = _strongest_quarter_tones(major), _strongest_quarter_tones(minor)
    assert (r1, f1) == (r2, f2)
    assert t1 - r1 == 8 and t2 - r2 == 6  # four and three semitones, in quarter-tones


def test_the_pitch_rows_ignore_the_level_and_silence_has_no_notes():
    tone = _chord(5 / 4)
    np.testing.assert_allclose(at.pitch_spectrum(tone), at.pitch_spectrum(tone * 0.01), atol=1e-3)
    assert (at.pitch_spectrum(np.zeros(SR, np.float32)) == at.PITCH_FLOOR).all()


def test_the_peak_row_is_the_frames_sample_peak_in_dbfs():
    x = np.zeros(2 * SR, np.float32)
    x[SR // 2] = 0.5  # one sample at -6 dBFS
    peaks = at.frame_peaks(x, at.log_mel(x).shape[1])[0]
    assert abs(peaks.max() - 20 * np.log10(0.5)) < 1e-4
    assert peaks.min() == at.PEAK_FLOOR_DB
    rows = at.model_inputs(x)
    assert rows.shape == (at.input_rows(), at.log_mel(x).shape[1])
    np.testing.assert_array_equal(rows[-1], peaks)


def test_short_clips_are_padded_with_silence_in_every_row():
    n = at.frames_for(at.WINDOW_SECONDS)
    rows = at.fit_frames(at.model_inputs(np.ones(SR // 2, np.float32) * 0.1), n)
    assert rows.shape == (at.input_rows(), n)
    tail = rows[:, -10:]
    assert (tail[:at.N_MELS] == at.LOG_FLOOR).all() and (tail[at.N_MELS:-1] == at.PITCH_FLOOR).all()
    assert (tail[-1] == at.PEAK_FLOOR_DB).all()


def test_a_tower_built_without_pitch_reads_the_mel_rows_only(tmp_path):
    old = at.AudioTower(embed_dim=16, width=32, layers=1, heads=2)
    new = at.AudioTower(embed_dim=16, width=32, layers=1, heads=2, pitch_bins=at.PITCH_BINS, pitch_channels=4)
    wave = _chord(5 / 4, seconds=2.0)
    n = at.frames_for(at.WINDOW_SECONDS)
    with torch.inference_mode():
        assert old(torch.from_numpy(at.fit_frames(at.model_inputs(wave, pitch=False), n))[None]).shape == (1, 16)
        emb, tokens = new(torch.from_numpy(at.fit_frames(at.model_inputs(wave), n))[None], return_tokens=True)
    assert emb.shape == (1, 16) and tokens.shape[-1] == 32
    at.save_audio_tower(new, tmp_path / "a.safetensors")
    back, _ = at.load_audio_tower(tmp_path / "a.safetensors")
    assert back.reads_pitch and not old.reads_pitch


def test_familiar_frames_leave_out_the_level_and_the_silence():
    tone = _chord(5 / 4, seconds=1.0)
    padded = np.concatenate([np.zeros(SR, np.float32), tone])
    a, b = at.familiar_frames(tone), at.familiar_frames(padded * 0.05)
    assert a.shape[1] == at.N_MELS and abs(len(a) - len(b)) <= 3  # the silent second is dropped
    np.testing.assert_allclose(np.median(a, axis=0), np.median(b, axis=0), atol=0.05)


def test_an_older_bundles_tower_without_pitch_rows_still_encodes_through_the_handle(tmp_path):
    from mmdemo.models.audio_backend import TinyAudioHandle

    class _Text:
        model_id = "tiny-clip:test"

    old = at.AudioTower(embed_dim=16, width=32, layers=1, heads=2)
    at.save_audio_tower(old, tmp_path / "old-audio.safetensors")
    handle = TinyAudioHandle.from_file(tmp_path / "old-audio.safetensors", "cpu", "old-audio:test", _Text())
    waves = [_chord(5 / 4, seconds=2.0), np.zeros(SR // 10, np.float32)]
    assert handle.encode_waves(waves).shape == (2, 16)
    pooled, tokens = handle.encode_wave_tokens(waves)
    assert pooled.shape == (2, 16) and tokens.shape[0] == 2
    assert handle.unfamiliar_waves(waves) is None  # no familiarity file beside it: nothing said
