"""Do the tiny audio model's sound words mean what people hear? Part of ``eval``.

Sweeps made by a third renderer (plain numpy here, neither generator's code) across
each ordinal scale of ``toyworld/meanings.py``: pitch (sine, square and sawtooth from
80 Hz to 4 kHz), loudness (peaks from -44 to -1 dBFS) and click rate (2 to 24 per
second). At each point the model chooses between the scale's words, in the canonical
description ("a loud low sine tone" vs "a loud mid sine tone" ...); the right word is
the band that holds the point. A sweep is *monotone* when its chosen words never step
back down the scale. Chords: major vs minor, rendered by both generators.
"""

from __future__ import annotations

import numpy as np

from mmdemo.toyworld import meanings

SR = 16000
ORDER = {"pitch": ("low", "mid", "high"), "rate": ("slow", "fast"), "loudness": ("quiet", "loud")}


def _tone(wave: str, hz: float, seconds: float, peak_db: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if wave == "sine":
        x = np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    else:  # band-limited from harmonics, each at a random phase
        ks = np.arange(1, int(SR / 2 / hz) + 1)
        ks = ks[ks % 2 == 1] if wave == "square" else ks
        x = sum(np.sin(2 * np.pi * k * hz * t + rng.uniform(0, 2 * np.pi)) / k for k in ks)
    fade = int(0.02 * SR)
    x[:fade] *= np.linspace(0, 1, fade)
    x[-fade:] *= np.linspace(1, 0, fade)
    return _at_peak(x, peak_db)


def _clicks(rate: float, seconds: float, peak_db: float, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(int(seconds * SR))
    n = int(0.003 * SR)
    click = np.hanning(2 * n)[n:] * rng.standard_normal(n)
    for start in (np.arange(rng.uniform(0, 1 / rate), seconds, 1 / rate) * SR).astype(int):
        seg = x[start:start + n]
        seg += click[: len(seg)]
    return _at_peak(x, peak_db)


def _noise(seconds: float, peak_db: float, rng: np.random.Generator) -> np.ndarray:
    return _at_peak(rng.standard_normal(int(seconds * SR)), peak_db)


def _at_peak(x: np.ndarray, peak_db: float) -> np.ndarray:
    return (x / (np.abs(x).max() + 1e-12) * 10 ** (peak_db / 20)).astype(np.float32)


def _choose(audio, waves: list[np.ndarray], options: list[list[str]]) -> list[int]:
    """Per clip, the index of the description (among its own options) the model prefers."""
    embs = audio.encode_waves(waves)
    flat = sorted({t for opts in options for t in opts})
    text = dict(zip(flat, audio.encode_texts(flat)))
    return [int(np.argmax([e @ text[t] for t in opts])) for e, opts in zip(embs, options)]


def _sweep(audio, axis: str, bands: dict, points, make, describe) -> dict:
    """``make(point)`` -> wave; ``describe(word)`` -> the description naming that word."""
    words = ORDER[axis]
    waves = [make(p) for p in points]
    picked = [words[i] for i in _choose(audio, waves, [[describe(w) for w in words]] * len(waves))]
    truth = [meanings.band_of(bands, p) for p in points]
    ranks = [words.index(w) for w in picked]
    flags = audio.unfamiliar_waves(waves) if hasattr(audio, "unfamiliar_waves") else None
    return {"points": [round(float(p), 2) for p in points], "words": picked,
            "correct": round(float(np.mean([a == b for a, b in zip(picked, truth)])), 4),
            "monotone": bool(all(b >= a for a, b in zip(ranks, ranks[1:]))),
            "flagged_unfamiliar": None if flags is None else round(float(np.mean(flags)), 4)}


def pitch_sweep(audio, seed: int, n: int = 25) -> dict:
    rng = np.random.default_rng(seed)
    hz = np.geomspace(80, 4000, n)
    out = {w: _sweep(audio, "pitch", meanings.PITCH_HZ, hz, lambda f, w=w: _tone(w, f, 1.5, -6.0, rng),
                     lambda p, w=w: f"a loud {p} {w} tone") for w in ("sine", "square", "sawtooth")}
    out["correct"] = round(float(np.mean([out[w]["correct"] for w in ("sine", "square", "sawtooth")])), 4)
    out["monotone"] = all(out[w]["monotone"] for w in ("sine", "square", "sawtooth"))
    return out


def loudness_sweep(audio, seed: int, n: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    db = np.linspace(-44, -1, n)
    kinds = {"noise": (lambda d: _noise(1.5, d, rng), "burst of white noise"),
             "sine 440 Hz": (lambda d: _tone("sine", 440.0, 1.5, d, rng), "mid sine tone"),
             "clicks 4/s": (lambda d: _clicks(4.0, 2.0, d, rng), "series of slow clicks")}
    out = {k: _sweep(audio, "loudness", meanings.PEAK_DBFS, db, make, lambda w, name=name: f"a {w} {name}")
           for k, (make, name) in kinds.items()}
    out["correct"] = round(float(np.mean([out[k]["correct"] for k in kinds])), 4)
    out["monotone"] = all(out[k]["monotone"] for k in kinds)
    return out


def click_sweep(audio, seed: int, n: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    rates = np.geomspace(2, 24, n)
    return _sweep(audio, "rate", meanings.CLICK_RATE_HZ, rates, lambda r: _clicks(r, 2.5, -6.0, rng),
                  lambda w: f"a loud series of {w} clicks")


def chords(audio, seed: int, n: int, sound2=None) -> dict:
    """Major vs minor, per quality, on ``n`` chords of each generator (varied voice for the first)."""
    from mmdemo.toyworld import sounds

    rng = np.random.default_rng(seed)
    specs = [sounds.sample_sound(rng, n_events=1, keys=(("chord", q),)) for q in ("major", "minor") for _ in range(n)]
    renderers = {"first_generator": lambda s: sounds.render_sound(s, rng=rng)}
    if sound2 is not None:
        renderers["second_generator"] = sound2
    out = {}
    for name, render in renderers.items():
        waves = [render(s) for s in specs]
        loud = ["loud" if s.loud else "quiet" for s in specs]
        picked = _choose(audio, waves, [[f"a {lw} major chord", f"a {lw} minor chord"] for lw in loud])
        truth = [0] * n + [1] * n
        hits = np.equal(picked, truth)
        out[name] = {"major": round(float(hits[:n].mean()), 4), "minor": round(float(hits[n:].mean()), 4), "n": n}
    return out


def evaluate_sounds(audio, seed: int, n: int = 100, sound2=None) -> dict:
    """Every sweep and the chords; ``sound2``: the second generator's renderer (spec -> wave)."""
    return {"pitch_sweep": pitch_sweep(audio, seed), "loudness_sweep": loudness_sweep(audio, seed + 1),
            "click_sweep": click_sweep(audio, seed + 2), "chords": chords(audio, seed + 3, n, sound2)}
