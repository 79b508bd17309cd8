"""CLAP audio backend costs, each next to a baseline measured in the same run:

1. audio embedding through ``ClapHandle.encode_waves`` (the Audio tab's path: the
   processor's features + the model) for 16 ten-second 48 kHz clips in one call vs one
   call per clip (and the features alone, their share of it), on the same model: the random tiny ClapConfig of the tests
   (``tests/helpers/tiny_models.save_tiny_clap``, loaded by ``load_clap`` from a
   ``local-dir:`` folder) and the real laion/clap-htsat-unfused architecture
   (``ClapConfig()``, which is that checkpoint's config.json) with random weights;
2. preprocessing one 10 s clip: ``mmdemo.media.load_audio`` of a WAV file (decode, mono,
   soxr to 48 kHz) + the processor's features (``ClapFeatureExtractor`` as
   clap-htsat-unfused configures it) vs the processor alone on audio already at 48 kHz,
   for a 44.1 kHz stereo file and a 16 kHz mono one.

Nothing downloads. Each side is warmed up first; the sides alternate run by run (so
other work on a shared machine slows both alike) and medians are reported.

    python bench/bench_clap.py [--quick]

Prints one JSON object. ``speedup_batched`` > 1 means one batched call is faster;
``full_over_processor_only`` is what loading and resampling add on top of the features.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import alternating_medians  # noqa: E402 - bench/, beside this script

SR = 48000
SECONDS = 10.0


def _clips(n: int, sr: int = SR, seconds: float = SECONDS, seed: int = 0) -> list:
    """Distinct ten-second clips: a few tones and a chirp over noise (content is irrelevant
    to the cost; distinct clips keep any caching honest)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = []
    for _ in range(n):
        f0, f1 = rng.uniform(100, 4000, size=2)
        wave = 0.3 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / seconds / 2) * t)
        wave += 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        out.append(wave.astype(np.float32))
    return out


def _extractor():
    from transformers import ClapFeatureExtractor

    # clap-htsat-unfused's preprocessor_config.json: 64 mel bins, 48 kHz, hop 480, 10 s,
    # rand_trunc (never used here: no clip is longer than 10 s), repeatpad.
    return ClapFeatureExtractor(feature_size=64, sampling_rate=SR, hop_length=480, max_length_s=10,
                                truncation="rand_trunc", padding="repeatpad")


def _tiny_handle(tmp: Path):
    from mmdemo.catalog import EntrySpec
    from mmdemo.models.clap_backend import load_clap
    from tests.helpers.tiny_models import save_tiny_clap

    save_tiny_clap(tmp / "tiny-clap")
    spec = EntrySpec(name="tiny-clap", kind="audio", backend="clap", arch=f"local-dir:{tmp / 'tiny-clap'}")
    return load_clap(spec, "cpu")


def _htsat_handle(tokenizer):
    import torch
    from transformers import ClapConfig, ClapModel

    from mmdemo.models.clap_backend import ClapHandle

    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval()
    # Audio embedding never tokenizes; RoBERTa's real tokenizer would be a download, so the tiny one stands in.
    processor = SimpleNamespace(feature_extractor=_extractor(), tokenizer=tokenizer)
    return ClapHandle(model, processor, "cpu", "random:clap-htsat-unfused")


def bench_embedding(handle, n: int, runs: int) -> dict:
    import numpy as np
    import torch

    waves = _clips(n)
    def warmup():  # each shape once (thread pool, allocator, kernels), not all of the slow side
        handle.encode_waves(waves, batch_size=n)
        handle.encode_waves(waves[:1])

    t = alternating_medians({"batched": lambda: handle.encode_waves(waves, batch_size=n),
                  "one_at_a_time": lambda: [handle.encode_waves([w]) for w in waves],
                  "features": lambda: handle._features(waves)}, runs, warmup)
    batched = handle.encode_waves(waves, batch_size=n)
    single = np.concatenate([handle.encode_waves([w]) for w in waves])
    return {"params": sum(p.numel() for p in handle.model.parameters()),
            "audio_params": sum(p.numel() for p in handle.model.audio_model.parameters()),
            "clips": n, "clip": f"{SECONDS:g} s at {SR // 1000} kHz", "runs": runs,
            "torch_threads": torch.get_num_threads(),
            "batched_ms_per_clip": round(t["batched"] / n * 1e3, 1),
            "one_at_a_time_ms_per_clip": round(t["one_at_a_time"] / n * 1e3, 1),
            "speedup_batched": round(t["one_at_a_time"] / t["batched"], 2),
            # The processor's share of the batched call: it works clip by clip, batched or not.
            "features_ms_per_clip": round(t["features"] / n * 1e3, 1),
            "max_abs_diff_batched_vs_single": float(np.abs(batched - single).max())}


def _write_wav(path: Path, sr: int, channels: int) -> None:
    import numpy as np
    import soundfile as sf
    import soxr

    wave = soxr.resample(_clips(1, seed=7)[0], SR, sr)
    data = np.stack([wave, 0.8 * wave], axis=1) if channels == 2 else wave
    sf.write(path, np.clip(data, -1, 1), sr, subtype="PCM_16")


def bench_preprocess(path: Path, label: str, runs: int) -> dict:
    from mmdemo.media import load_audio

    fe = _extractor()
    resampled = load_audio(path, target_sr=SR, max_seconds=60.0).wave

    def load():
        return load_audio(path, target_sr=SR, max_seconds=60.0).wave

    def full():
        return fe([load()], sampling_rate=SR, return_tensors="np")["input_features"]

    def processor_only():
        return fe([resampled], sampling_rate=SR, return_tensors="np")["input_features"]

    t = alternating_medians({"full": full, "processor_only": processor_only, "load_and_resample": load}, runs)
    return {"file": label, "runs": runs,
            "load_resample_features_ms": round(t["full"] * 1e3, 2),
            "processor_only_ms": round(t["processor_only"] * 1e3, 2),
            "load_and_resample_only_ms": round(t["load_and_resample"] * 1e3, 2),
            "full_over_processor_only": round(t["full"] / t["processor_only"], 2),
            "features": "x".join(map(str, full().shape)) + " (clips x channels x frames x mel)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 clips, fewer runs (about 1.5 min on 2 cores)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    n, runs = (4, 2) if args.quick else (16, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pre = []
        for name, sr, channels in (("44k1.wav", 44100, 2), ("16k.wav", 16000, 1)):
            _write_wav(tmp / name, sr, channels)
            label = f"10 s, {sr / 1000:g} kHz, {'stereo' if channels == 2 else 'mono'}, 16-bit WAV"
            pre.append(bench_preprocess(tmp / name, label, runs=3 if args.quick else 9))
        tiny_handle = _tiny_handle(tmp)
        tiny = bench_embedding(tiny_handle, n, runs)
    # The real architecture: ~1-3 s a clip on 2 cores, so fewer runs.
    htsat = bench_embedding(_htsat_handle(tiny_handle.tokenizer), n, 1 if args.quick else 2)
    print(json.dumps({"benchmark": "clap", "quick": args.quick, "preprocess_10s": pre,
                      "embedding": {"tiny_random_clap": tiny, "htsat_unfused_random_weights": htsat}}, indent=2))


if __name__ == "__main__":
    main()
