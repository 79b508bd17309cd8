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


def _event_wave(e: SoundEvent, rng: np.random.Generator) -> np.ndarray:
    n = int(e.seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    j = 1.0 + e.jitter
    if e.kind == "tone":
        pitch, wave = e.variant.split()
        phase = 2 * np.pi * PITCHES[pitch] * j * t
        x = {"sine": np.sin(phase), "square": np.sign(np.sin(phase)),
             "sawtooth": 2 * ((phase / (2 * np.pi)) % 1.0) - 1}[wave]
    elif e.kind == "chirp":
        f0, f1 = (300.0 * j, 3000.0 * j) if e.variant == "rising" else (3000.0 * j, 300.0 * j)
        k = np.log(f1 / f0) / e.seconds  # exponential sweep: even in log-frequency (mel) space
        x = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
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
        rate = (3.0 if e.variant == "slow" else 16.0) * j
        x = np.zeros(n)
        burst = np.exp(-np.arange(int(0.004 * SAMPLE_RATE)) / 12.0) * rng.standard_normal(int(0.004 * SAMPLE_RATE))
        for start in (np.arange(0, e.seconds, 1 / rate) * SAMPLE_RATE).astype(int):
            seg = x[start:start + len(burst)]
            seg += burst[: len(seg)]
    elif e.kind == "chord":
        root = 262.0 * j
        ratios = (1.0, 1.25, 1.5) if e.variant == "major" else (1.0, 1.2, 1.5)
        x = sum(np.sin(2 * np.pi * root * r * t) for r in ratios)
    else:
        raise ValueError(f"unknown sound kind {e.kind}")
    x = x / (np.max(np.abs(x)) + 1e-9)
    if e.kind != "clicks":
        fade = min(n // 4, int(0.01 * SAMPLE_RATE))
        ramp = np.linspace(0, 1, fade)
        x[:fade] *= ramp
        x[n - fade:] *= ramp[::-1]
    return x


def render_sound(spec: SoundSpec) -> np.ndarray:
    """float32 mono at SAMPLE_RATE in [-1, 1]; deterministic given the spec."""
    rng = np.random.default_rng(spec.seed)
    x = np.concatenate([_event_wave(e, rng) for e in spec.events])
    return (x * (0.9 if spec.loud else 0.15)).astype(np.float32)


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
