"""Audio tab costs, each next to a baseline measured in the same run:

1. preprocessing a 10 s stereo 44.1 kHz WAV: mmdemo's path (media.load_audio: decode,
   mono, soxr to 16 kHz; then everything the model reads: log-mel, pitch and peak rows) vs librosa's defaults
   (``librosa.load(path)`` resampling to 22.05 kHz + ``librosa.feature.melspectrogram``);
2. audio embedding throughput of the tiny encoder: one batched ``encode_waves`` call vs
   one call per clip.

    python bench/bench_audio.py [--quick]

Prints one JSON object. Ratios > 1 mean mmdemo's way is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median_time(fn, runs: int) -> float:
    fn()  # warm-up: imports, FFT plans, allocator
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _test_clip(path: Path, seconds: float = 10.0, sr: int = 44100) -> None:
    import numpy as np
    import soundfile as sf

    from mmdemo.toyworld import sounds as S

    rng = np.random.default_rng(0)
    specs = [S.sample_sound(rng, n_events=1) for _ in range(8)]
    wave16 = np.concatenate([S.render_sound(s) for s in specs])[: int(seconds * S.SAMPLE_RATE)]
    import soxr

    wave = soxr.resample(wave16, S.SAMPLE_RATE, sr)
    stereo = np.stack([wave, 0.8 * wave], axis=1)
    sf.write(path, stereo, sr, subtype="PCM_16")


def bench_preprocess(path: Path, runs: int) -> dict:
    import librosa

    from mmdemo.media import load_audio
    from mmdemo.models.audio_tower import model_inputs

    def ours():
        clip = load_audio(path, target_sr=16000, max_seconds=60.0)
        return model_inputs(clip.wave)

    def baseline():
        y, sr = librosa.load(path)
        return librosa.feature.melspectrogram(y=y, sr=sr)

    # Alternate so drift on a shared machine hits both sides alike.
    ours_s, base_s = [], []
    for _ in range(2):
        ours_s.append(_median_time(ours, runs))
        base_s.append(_median_time(baseline, runs))
    o, b = min(ours_s), min(base_s)
    mine, theirs = ours(), baseline()
    return {"clip": "10 s, 44.1 kHz, stereo, 16-bit WAV", "runs": runs,
            "mmdemo_ms": round(o * 1e3, 2), "librosa_default_ms": round(b * 1e3, 2),
            "speedup_vs_librosa": round(b / o, 2),
            "mmdemo_output": "x".join(map(str, mine.shape)) + " (64 mel + 96 quarter-tone + 1 peak rows x frames, 16 kHz, 10 ms hop)",
            "librosa_output": "x".join(map(str, theirs.shape)) + " (mel x frames, 22.05 kHz, 23 ms hop)"}


def bench_embedding(n: int, runs: int) -> dict:
    import numpy as np
    import torch

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry
    from mmdemo.toyworld import sounds as S

    audio = Registry(load_catalog(), device="cpu", profile="tiny").for_slot("audio")
    rng = np.random.default_rng(1)
    waves = [S.render_sound(S.sample_sound(rng)) for _ in range(n)]
    batched = _median_time(lambda: audio.encode_waves(waves, batch_size=64), runs)
    single = _median_time(lambda: [audio.encode_waves([w]) for w in waves], runs)
    same = np.allclose(audio.encode_waves(waves), np.concatenate([audio.encode_waves([w]) for w in waves]), atol=1e-4)
    return {"clips": n, "runs": runs, "torch_threads": torch.get_num_threads(),
            "batched_clips_per_s": round(n / batched, 1), "one_at_a_time_clips_per_s": round(n / single, 1),
            "speedup_batched": round(single / batched, 2), "same_embeddings": bool(same)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and clips (about 20 s)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        _test_clip(path)
        pre = bench_preprocess(path, runs=3 if args.quick else 9)
    emb = bench_embedding(n=16 if args.quick else 64, runs=2 if args.quick else 3)
    print(json.dumps({"benchmark": "audio", "quick": args.quick, "preprocess_10s": pre, "embedding": emb}, indent=2))


if __name__ == "__main__":
    main()
