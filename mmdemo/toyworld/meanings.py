"""What each word of the generated world means, in measurable terms.

Both generators stay inside these ranges: the first (scenes.py, sounds.py) at one
point of each, the second (second_generator.py) anywhere in them. The model card
prints :func:`table`, so a user can make inputs the tiny bundle understands.
Sizes and positions are fractions of the image side (64 px for the tiny bundle).
"""

from __future__ import annotations

# Images
SIZE_DIAMETER = {"small": (0.17, 0.27), "large": (0.34, 0.46)}  # object width / image side
COLOUR_JITTER = 20  # +- per RGB channel around the colour's value in scenes.COLOURS
MAX_ROTATION_DEG = 8.0  # shapes stand upright, give or take this
RING_WIDTH = (0.25, 0.45)  # ring line width / its outer radius
STAR_INNER = (0.38, 0.50)  # 5-point star: inner / outer radius
CROSS_ARM = (0.28, 0.42)  # cross arm half-width / half-length
BACKGROUND_GREY = (125, 175)  # background grey level (0-255), with a slight colour cast
PATTERN_CONTRAST = (25, 50)  # pattern colour: background +- this
PATTERN_PERIOD_PX = (6, 10)  # stripe, dot and check period at 64 px (vertical stripes)
DOT_RADIUS_PX = (1.0, 2.2)  # at 64 px

# Sounds. Each family of words splits one audible scale into bands that touch, so every
# value in the covered range has exactly one word and the words are ordinal (a sine swept
# from 80 Hz to 4 kHz is low, then mid, then high, never back): what people hear, not
# one point per word. The first generator draws log-uniformly within a band (sounds.log_uniform).
PITCH_HZ = {"low": (55.0, 300.0), "mid": (300.0, 1000.0), "high": (1000.0, 5000.0)}  # tone fundamental
# A square's first overtone is its 3rd harmonic, a sawtooth's its 2nd: above this pitch a
# 16 kHz recording (the tiny model's rate; its anti-alias filter passes about 7.2 kHz)
# keeps none of a square's and a sawtooth's are nearly gone; every wave sounds like a
# sine there, so "square" and "sawtooth" mean tones at or below it.
HARMONIC_WAVE_MAX_HZ = 2400.0
CHIRP_LOW_HZ, CHIRP_HIGH_HZ = (120.0, 600.0), (1200.0, 4000.0)  # a sweep between the two, up or down
CLICK_RATE_HZ = {"slow": (1.5, 7.0), "fast": (7.0, 25.0)}  # clicks per second
CHORD_ROOT_HZ = (160.0, 450.0)  # major: root, major third, fifth; minor: root, minor third, fifth
PEAK_DBFS = {"quiet": (-45.0, -12.0), "loud": (-12.0, 0.0)}  # clip peak
EVENT_SECONDS = {"one event": (1.0, 4.0), "each of two events": (0.8, 2.0)}


def pitch_band(pitch: str, wave: str) -> tuple[float, float]:
    """The fundamentals a ``pitch`` ``wave`` tone can have (PITCH_HZ, square and sawtooth
    capped at HARMONIC_WAVE_MAX_HZ)."""
    lo, hi = PITCH_HZ[pitch]
    return (lo, hi) if wave == "sine" else (lo, min(hi, HARMONIC_WAVE_MAX_HZ))


def band_of(bands: dict[str, tuple[float, float]], value: float) -> str | None:
    """The word whose band holds ``value`` (a boundary belongs to the upper band); None
    outside every band."""
    for word, (lo, hi) in sorted(bands.items(), key=lambda kv: kv[1]):
        if lo <= value < hi or (value == hi and hi == max(b[1] for b in bands.values())):
            return word
    return None


def _span(lo_hi, unit: str = "") -> str:
    lo, hi = lo_hi
    return f"{lo:g} to {hi:g}{unit}" if lo < 0 else f"{lo:g}-{hi:g}{unit}"


def table() -> str:
    """A Markdown table of every measurable word, for the model card."""
    rows = [
        ("small / large", f"object width {_span(SIZE_DIAMETER['small'])} / {_span(SIZE_DIAMETER['large'])} "
                          "of the image side (about 11-17 / 22-29 px at 64 px)"),
        ("colours", f"scenes.COLOURS RGB values, +-{COLOUR_JITTER} per channel"),
        ("shapes", f"upright within +-{MAX_ROTATION_DEG:g} degrees; ring width {_span(RING_WIDTH)} of its radius; "
                   f"star inner radius {_span(STAR_INNER)} of the outer"),
        ("left of / right of", "object centres at least 0.1 of the side apart horizontally"),
        ("plain / striped / dotted / checkered", f"grey {_span(BACKGROUND_GREY)}; pattern {_span(PATTERN_CONTRAST)} "
                                                 f"grey levels lighter or darker, period "
                                                 f"{_span(PATTERN_PERIOD_PX, ' px')}, "
                                                 "vertical stripes"),
        ("low / mid / high (tones)", " / ".join(_span(PITCH_HZ[p], " Hz") for p in ("low", "mid", "high"))),
        ("sine / square / sawtooth", "pure tone / odd harmonics at 1/k / all harmonics at 1/k; square and sawtooth "
                                     f"up to {HARMONIC_WAVE_MAX_HZ:g} Hz (above it a 16 kHz recording keeps too "
                                     "little of their harmonics to tell them from a sine)"),
        ("rising / falling chirp", f"exponential sweep {_span(CHIRP_LOW_HZ)} Hz <-> {_span(CHIRP_HIGH_HZ)} Hz"),
        ("slow / fast clicks", " / ".join(_span(CLICK_RATE_HZ[p], " clicks/s") for p in ("slow", "fast"))),
        ("major / minor chord", f"root {_span(CHORD_ROOT_HZ, ' Hz')} with a major / minor third and a fifth "
                                "(equal-tempered or just intonation; notes may start up to 40 ms apart)"),
        ("white / pink / brown noise", "flat spectrum / -3 dB per octave / -6 dB per octave"),
        ("quiet / loud", " / ".join(_span(PEAK_DBFS[p], " dBFS peak") for p in ("quiet", "loud"))),
        ("durations", "; ".join(f"{k} {_span(v, ' s')}" for k, v in EVENT_SECONDS.items())),
    ]
    return "\n".join(["| words | meaning |", "|---|---|", *(f"| {w} | {m} |" for w, m in rows)])
