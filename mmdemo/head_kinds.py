"""The fusion head kinds, what each can and cannot do, and when a head is at chance.

Torch-free, so the app can list kinds and explain a head's limits without loading
any model; :mod:`mmdemo.models.fusion` builds the heads themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

HEAD_META_KEY = "mmdemo_head"  # the safetensors metadata entry holding a head's config, labels and encoders

HEAD_KINDS = ("weighted_sum", "concat", "bilinear", "attention", "gated")
# Kinds that read token sequences (image patches, words, sound frames) when the
# features have them; weighted sum and concatenation read one pooled vector per modality.
TOKEN_KINDS = ("bilinear", "attention", "gated")
# Within this much of chance (accuracy), a head is said to be at chance.
AT_CHANCE_MARGIN = 0.05

WHAT_IT_READS = {
    "weighted_sum": "one pooled vector per modality, summed with learned weights",
    "concat": "one pooled vector per modality, concatenated into an MLP",
    "bilinear": "the question's vector multiplied with every image patch and sound frame (a low-rank matrix product)",
    "attention": "the question's words attending over image patches and sound frames, through two layers",
    "gated": "question-conditioned gates on every image patch and sound frame, then gates between modalities",
}

# Why a pooled kind cannot answer questions about which colour goes with which shape.
POOLED_LIMIT = ("it reads one pooled vector per input, which cannot bind a colour to its shape among "
                "other objects (a red star and a blue circle pool much like a blue star and a red circle)")


def _fraction(value) -> float | None:
    """A recorded accuracy or chance, or None when it is missing or not a number in [0, 1]
    (an uploaded file's metadata is anybody's)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if 0.0 <= value <= 1.0 else None


def _quality(meta: dict) -> dict:
    quality = (meta or {}).get("quality")
    return quality if isinstance(quality, dict) else {}


def chance_of(meta: dict) -> float | None:
    """A head file's chance accuracy: recorded, or 1 / number of labels."""
    chance = _fraction(_quality(meta).get("chance"))
    if chance is not None:
        return chance
    labels = (meta or {}).get("labels")
    return 1.0 / len(labels) if isinstance(labels, list) and labels else None


def accuracy_of(meta: dict) -> float | None:
    """The accuracy a head file records (its test set, else its validation split)."""
    acc = _fraction(_quality(meta).get("accuracy"))
    if acc is not None:
        return acc
    val = (meta or {}).get("validation")
    return _fraction(val.get("accuracy")) if isinstance(val, dict) else None


def is_at_chance(accuracy: float, chance: float) -> bool:
    """The one rule for "at chance", for head files and leaderboard rows alike."""
    return accuracy <= chance + AT_CHANCE_MARGIN


def at_chance(meta: dict) -> bool:
    acc, chance = accuracy_of(meta), chance_of(meta)
    return acc is not None and chance is not None and is_at_chance(acc, chance)


def quality_line(meta: dict) -> str:
    """One line a person reads beside a head: its held-out accuracy against chance and the
    best single modality, where recorded."""
    acc, chance = accuracy_of(meta), chance_of(meta)
    if acc is None:
        return "accuracy not recorded"
    quality = _quality(meta)
    # A head trained in the app is scored on the validation split that also picked it (optimistic);
    # the bundled heads on a test set of their own.
    what = "held-out accuracy" if quality.get("split") == "test" else "validation accuracy"
    parts = [f"{what} {acc:.2f}"]
    if chance is not None:
        parts.append(f"chance {chance:.2f}")
    best = _fraction(quality.get("best_single"))
    if best is not None:
        parts.append(f"best single modality {best:.2f}")
    return ", ".join(parts)


def chance_warning(meta: dict, kind: str) -> str | None:
    """What to say about a head at chance on its task (None when it is not): why, and what
    to use instead."""
    if not at_chance(meta):
        return None
    why = POOLED_LIMIT if kind not in TOKEN_KINDS else "it did not learn this task from its data"
    return (f"This {kind} head is at chance on its task ({quality_line(meta)}): {why}. Its answers mean "
            "nothing; use an attention, bilinear or gated head instead.")


@dataclass(frozen=True)
class HeadSummary:
    """What a person is told about a head before using it, read from its file's header
    alone: no torch, no weights (picking a head in the UI loads nothing)."""

    name: str
    kind: str
    modalities: tuple[str, ...]
    meta: dict = field(default_factory=dict)


def read_head_summary(path: str | Path, name: str) -> HeadSummary:
    """The summary of the head file at ``path``; a file that is no head raises ValueError."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= 16 * 1024 * 1024:  # safetensors caps its header well below this
            raise ValueError("not a safetensors file")
        header = json.loads(f.read(size))
    meta = json.loads((header.get("__metadata__") or {})[HEAD_META_KEY])
    return HeadSummary(name, str(meta["config"]["kind"]), tuple(meta["modalities"]), meta)
