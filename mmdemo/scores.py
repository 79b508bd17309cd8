"""Scores as users see them: softmax probabilities and ranked ``{label, score}`` lists.

Every tab reports scores the way Hugging Face pipelines do (a plain list of
``{"label", "score"}``, best first); this is the one place that computes them.
Pure numpy: the task layer uses it without importing torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmdemo.errors import MMDemoError


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


# More results than this is not a search but a dump of the gallery: on a saved index of
# millions, an approximate search for k of them costs about as much as k searches.
MAX_SEARCH_RESULTS = 1000


def result_count(k: Any) -> int:
    """How many results a search returns: ``k`` as a whole number, at least 1 and at most
    MAX_SEARCH_RESULTS."""
    try:
        return min(max(1, int(k)), MAX_SEARCH_RESULTS)
    except (TypeError, ValueError):
        raise MMDemoError("result_count_invalid", f"The number of results must be a whole number (got {k!r}).") from None
