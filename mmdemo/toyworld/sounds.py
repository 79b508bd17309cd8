"""Generated sounds: tones, chirps, noises, click trains, chords; one event or two in a
row; loud or quiet; each with one canonical description and paraphrases."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000

PITCHES = {"low": 130.0, "mid": 440.0, "high": 1700.0}
WAVES = ("sine", "square", "sawtooth")
# (kind, variant) -> the phrase that names it, article included.
EVENTS: dict[tuple[str, str], str] = {}
for _p in PITCHES:
    for _w in WAVES:
        EVENTS[("tone", f"{_p} {_w}")] = f"a {_p} {_w} tone"
EVENTS.update({
    ("chirp", "rising"): "a rising chirp", ("chirp", "falling"): "a falling chirp",
    ("noise", "white"): "a burst of white noise", ("noise", "pink"): "a burst of pink noise",
    ("noise", "brown"): "a burst of brown noise",
    ("clicks", "slow"): "a series of slow clicks", ("clicks", "fast"): "a series of fast clicks",
    ("chord", "major"): "a major chord", ("chord", "minor"): "a minor chord",
})
EVENT_KEYS = tuple(EVENTS)
_PHRASE_TO_KEY = {v: k for k, v in EVENTS.items()}


def _alternatives(kind: str, variant: str) -> tuple[str, ...]:
    """Other names of one event; each names only this event (no two classes share one)."""
    canon = EVENTS[(kind, variant)]
    if kind == "tone":
        pitch, wave = variant.split()
        alts = [f"a {pitch} {wave} note", f"a {pitch} {wave} wave", f"a {pitch} pitched {wave} tone"]
        if wave == "sine":
            alts += [f"a {pitch} pure tone", {"low": "a low hum", "mid": "a mid beep", "high": "a high beep"}[pitch]]
        else:
            alts.append(f"a {pitch} buzzy {wave} tone")
        return (canon, *alts)
    if kind == "chirp":
        way = {"rising": "upward", "falling": "downward"}[variant]
        go = {"rising": "up", "falling": "down"}[variant]
        return (canon, f"an {way} chirp", f"a {variant} sweep", f"a chirp going {go}")
    if kind == "noise":
        return (canon, f"a hiss of {variant} noise", f"a blast of {variant} noise", f"{variant} noise")
    if kind == "clicks":
        return (canon, f"{variant} clicking", f"a {variant} train of clicks", f"{variant} clicks")
    return (canon, f"a {variant} triad", f"a {variant} chord played at once")


ALTERNATIVES = {key: _alternatives(*key) for key in EVENT_KEYS}
_LOUDNESS = {True: ("loud", "strong"), False: ("quiet", "soft", "faint")}
_THEN = (" followed by ", ", then ", " and then ", " and after that ")
_LEADS = ("", "", "the sound of ", "you hear ", "a recording of ")


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))


WORDS = set().union(*(_tokens(t) for alts in ALTERNATIVES.values() for t in alts),
                    *(_tokens(t) for t in _THEN + _LEADS + _LOUDNESS[True] + _LOUDNESS[False]), {"a", "an"})


@dataclass(frozen=True)
class SoundEvent:
    kind: str
    variant: str
    seconds: float
    jitter: float  # relative frequency jitter, so no two clips are identical


@dataclass(frozen=True)
class SoundSpec:
    events: tuple[SoundEvent, ...]
    loud: bool
    seed: int

    @property
    def duration(self) -> float:
        return sum(e.seconds for e in self.events)


def sample_sound(rng: np.random.Generator, n_events: int | None = None,
                 keys: tuple[tuple[str, str], ...] | None = None, loud: bool | None = None) -> SoundSpec:
    """A random clip: one event (70%) or two different events in a row."""
    n = n_events or (1 if rng.random() < 0.7 else 2)
    keys = keys or EVENT_KEYS
    picks = rng.choice(len(keys), size=n, replace=False)
    if n == 1:
        secs = [float(rng.uniform(1.0, 4.0))]
    else:
        secs = [float(rng.uniform(0.8, 2.0)) for _ in range(n)]
    events = tuple(SoundEvent(*keys[i], seconds=s, jitter=float(rng.uniform(-0.05, 0.05)))
                   for i, s in zip(picks, secs))
    return SoundSpec(events, bool(rng.random() < 0.5) if loud is None else loud, int(rng.integers(2**31)))


@dataclass(frozen=True)
class _Voice:
    """Everything about a sound that the words leave open (see toyworld.meanings). The
    defaults are this generator's fixed point; :func:`render_sound` with an ``rng``
    draws a voice anywhere in the documented ranges instead (training augmentation)."""
    pitch_hz: float | None = None  # None: PITCHES[word] * (1 + jitter)
    phase: float = 0.0
    additive: bool = False  # square/sawtooth from harmonics below Nyquist, not naive
    chirp_hz: tuple[float, float] = (300.0, 3000.0)  # (low, high) before jitter
    linear_chirp: bool = False
    click_rate: float | None = None
    click_ring_hz: float = 0.0  # 0: a noise burst per click; else a decaying sine
    click_ms: float = 4.0
    chord_root: float = 262.0
    chord_stagger: float = 0.0  # seconds between the chord's notes' onsets
    just_chord: bool = True  # just intonation (4:5:6, 10:12:15), else equal-tempered
    attack: float = 0.01  # seconds
    release: float = 0.01
    fade_power: float = 1.0  # envelope curve: 1 linear, 2 quadratic
    harmonic_tilt: float = 1.0  # additive waves: harmonic k at 1/k**tilt
    harmonic_phases: bool = False  # additive waves: each harmonic at its own small phase offset


def log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    """A value drawn evenly in log scale between the band's ends: as many octaves of low
    pitch as of high, as many doublings of slow clicks as of fast (how people hear them)."""
    lo, hi = lo_hi
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _sample_voice(e: SoundEvent, rng: np.random.Generator) -> _Voice:
    from mmdemo.toyworld import meanings as m

    pitch, wave = e.variant.split() if e.kind == "tone" else (None, None)
    return _Voice(pitch_hz=log_uniform(rng, m.pitch_band(pitch, wave)) if pitch else None,
                  phase=float(rng.uniform(0, 2 * np.pi)), additive=bool(rng.random() < 0.5),
                  chirp_hz=(log_uniform(rng, m.CHIRP_LOW_HZ), log_uniform(rng, m.CHIRP_HIGH_HZ)),
                  linear_chirp=bool(rng.random() < 0.3),
                  click_rate=log_uniform(rng, m.CLICK_RATE_HZ[e.variant]) if e.kind == "clicks" else None,
                  click_ring_hz=float(rng.uniform(1000, 4000)) if rng.random() < 0.5 else 0.0,
                  click_ms=float(rng.uniform(2, 7)), chord_root=log_uniform(rng, m.CHORD_ROOT_HZ),
                  chord_stagger=float(rng.uniform(0, 0.04)), just_chord=bool(rng.random() < 0.5),
                  attack=float(rng.uniform(0.002, 0.06)), release=float(rng.uniform(0.01, 0.25)),
                  fade_power=float(rng.choice([1.0, 2.0])), harmonic_tilt=float(rng.uniform(0.8, 1.2)),
                  harmonic_phases=bool(rng.random() < 0.5))


def _periodic(wave: str, f: float, t: np.ndarray, phase: float, voice: _Voice) -> np.ndarray:
    p = 2 * np.pi * f * t + phase
    if wave == "sine":
        return np.sin(p)
    if voice.additive:  # band-limited: harmonics k (odd only for square) at about 1/k, below Nyquist
        ks = np.arange(1, int(SAMPLE_RATE / 2 / f) + 1)
        ks = ks[ks % 2 == 1] if wave == "square" else ks
        offsets = np.sin(ks * 12.9898 + phase) * 0.2 if voice.harmonic_phases else np.zeros(len(ks))
        return sum(np.sin(k * p + o) / k ** voice.harmonic_tilt for k, o in zip(ks, offsets))
    return np.sign(np.sin(p)) if wave == "square" else 2 * ((p / (2 * np.pi)) % 1.0) - 1


def _event_wave(e: SoundEvent, rng: np.random.Generator, voice: _Voice = _Voice()) -> np.ndarray:
    n = int(e.seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    j = 1.0 + e.jitter
    if e.kind == "tone":
        pitch, wave = e.variant.split()
        x = _periodic(wave, voice.pitch_hz or PITCHES[pitch] * j, t, voice.phase, voice)
    elif e.kind == "chirp":
        lo, hi = voice.chirp_hz[0] * j, voice.chirp_hz[1] * j
        f0, f1 = (lo, hi) if e.variant == "rising" else (hi, lo)
        if voice.linear_chirp:
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * e.seconds)) + voice.phase)
        else:
            k = np.log(f1 / f0) / e.seconds  # exponential sweep: even in log-frequency (mel) space
            x = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k + voice.phase)
    elif e.kind == "noise":
        white = rng.standard_normal(n)
        if e.variant == "white":
            x = white
        else:
            spec = np.fft.rfft(white)
            f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
            spec /= np.sqrt(f) if e.variant == "pink" else f
            x = np.fft.irfft(spec, n)
    elif e.kind == "clicks":
        rate = voice.click_rate or (3.0 if e.variant == "slow" else 16.0) * j
        x = np.zeros(n)
        m = int(voice.click_ms / 1000 * SAMPLE_RATE)
        decay = np.exp(-np.arange(m) / (m / 3 if voice.click_ring_hz else 12.0))
        source = (np.sin(2 * np.pi * voice.click_ring_hz * np.arange(m) / SAMPLE_RATE) if voice.click_ring_hz
                  else rng.standard_normal(m))
        burst = decay * source
        offset = 0.0 if voice.click_rate is None else float(rng.uniform(0, 1 / rate))
        for start in (np.arange(offset, e.seconds, 1 / rate) * SAMPLE_RATE).astype(int):
            seg = x[start:start + len(burst)]
            seg += burst[: len(seg)]
    elif e.kind == "chord":
        root = voice.chord_root * j
        third = 2 ** ((4 if e.variant == "major" else 3) / 12)  # equal-tempered
        if voice.just_chord:
            third = 5 / 4 if e.variant == "major" else 6 / 5
        ratios = (1.0, third, 1.5 if voice.just_chord else 2 ** (7 / 12))
        x = np.zeros(n)
        for k, r in enumerate(ratios):
            start = min(n, int(k * voice.chord_stagger * SAMPLE_RATE))
            x[start:] += np.sin(2 * np.pi * root * r * t[: n - start] + voice.phase * k)
    else:
        raise ValueError(f"unknown sound kind {e.kind}")
    x = x / (np.max(np.abs(x)) + 1e-9)
    if e.kind != "clicks":
        for seconds, part in ((voice.attack, slice(None)), (voice.release, slice(None, None, -1))):
            fade = min(n // 4, int(seconds * SAMPLE_RATE))
            x[part][:fade] *= np.linspace(0, 1, fade) ** voice.fade_power
    return x


def render_sound(spec: SoundSpec, rng: np.random.Generator | None = None) -> np.ndarray:
    """float32 mono at SAMPLE_RATE in [-1, 1]; deterministic given the spec (and ``rng``'s state).

    Without ``rng``: this generator's fixed voice. With it: pitches anywhere in their
    word's band, phases, band-limited or naive waves, chirp ends and curves, click
    rates and click sounds, chord roots and staggered onsets, attack and release, a
    short gap between events, and a peak anywhere in the loudness word's band
    (toyworld.meanings)."""
    from mmdemo.toyworld import meanings

    noise = np.random.default_rng(spec.seed)
    parts = []
    for k, e in enumerate(spec.events):
        if k and rng is not None:
            parts.append(np.zeros(int(rng.uniform(0.0, 0.15) * SAMPLE_RATE)))
        parts.append(_event_wave(e, noise, _sample_voice(e, rng) if rng is not None else _Voice()))
    x = np.concatenate(parts)
    if rng is None:
        peak = 0.9 if spec.loud else 0.15
    else:
        peak = 10 ** (rng.uniform(*meanings.PEAK_DBFS["loud" if spec.loud else "quiet"]) / 20)
    return (x * peak).astype(np.float32)


def describe(spec: SoundSpec) -> str:
    """Canonical description: loudness once, then the events in order."""
    first, *rest = [EVENTS[(e.kind, e.variant)] for e in spec.events]
    text = f"a {'loud' if spec.loud else 'quiet'} {first[2:]}"
    for phrase in rest:
        text += f" followed by {phrase}"
    return text


def _with_loudness(phrase: str, word: str) -> str:
    """Put the loudness word after the article: "an upward chirp" -> "a loud upward chirp"."""
    for art in ("a ", "an "):
        if phrase.startswith(art):
            return f"a {word} {phrase[len(art):]}"
    return f"{word} {phrase}"


def paraphrases(spec: SoundSpec, rng: np.random.Generator, n: int = 1) -> list[str]:
    """Other wordings naming the same events, in order, and the loudness."""
    out = []
    for _ in range(n):
        names = [ALTERNATIVES[(e.kind, e.variant)] for e in spec.events]
        names = [alts[rng.integers(len(alts))] for alts in names]
        loud = _LOUDNESS[spec.loud][rng.integers(len(_LOUDNESS[spec.loud]))]
        text = _with_loudness(names[0], loud)
        for name in names[1:]:
            text += _THEN[rng.integers(len(_THEN))] + name
        out.append(_LEADS[rng.integers(len(_LEADS))] + text)
    return out


def parse_description(text: str) -> tuple[bool | None, list[tuple[str, str]]]:
    """(loud?, event keys) of a canonical description."""
    text = text.lower().strip()
    loud = True if text.startswith("a loud ") else False if text.startswith("a quiet ") else None
    body = re.sub(r"^a (loud|quiet) ", "a ", text)
    keys = [_PHRASE_TO_KEY[p] for p in body.split(" followed by ") if p in _PHRASE_TO_KEY]
    return loud, keys


def sound_classes() -> list[str]:
    """The single-event phrases (no loudness): handy zero-shot labels."""
    return list(EVENTS.values())
