"""Scores as users see them: softmax probabilities and ranked ``{label, score}`` lists.

Every tab reports scores the way Hugging Face pipelines do (a plain list of
``{"label", "score"}``, best first); this is the one place that computes them.
Pure numpy: the task layer uses it without importing torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(logits, axis: int = -1) -> np.ndarray:
    """A numerically stable softmax along ``axis`` (float32 in, float32 out)."""
    x = np.asarray(logits, dtype=np.float32)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def ranked(probs, labels: Sequence[str]) -> list[dict]:
    """``[{label, score}]`` best first (ties keep the labels' order)."""
    probs = np.asarray(probs)
    order = np.argsort(-probs, kind="stable")
    return [{"label": labels[i], "score": float(probs[i])} for i in order]
