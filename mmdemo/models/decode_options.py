"""Caption decoding options: what a user may ask of the decoder, checked before any work.

Apart from :mod:`mmdemo.models.decoding` because it imports nothing heavy: the task
layer and the CLI's ``--help`` read the options and their limits without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmdemo.errors import MMDemoError

METHODS = ("greedy", "beam", "top_k", "top_p")
MAX_LENGTH_CAP = 128
MAX_BEAMS = 32
MAX_RETURN = 32


@dataclass
class DecodeOptions:
    method: str = "beam"
    num_beams: int = 3
    max_length: int = 20  # generated words, excluding sot and eot
    min_length: int = 1  # eot is forbidden before this many words
    temperature: float = 1.0  # sampling only: argmax and beam ranking do not depend on it
    top_k: int = 10
    top_p: float = 0.9
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    num_return: int = 1
    seed: int | None = None

    def validate(self, labels: dict[str, str] | None = None) -> "DecodeOptions":
        """Raise ``decode_option_invalid`` naming the first bad option; ``labels`` maps a
        field to what the caller's user calls it (num_return -> "the number of captions")."""
        def n(field: str) -> str:
            return (labels or {}).get(field, field)

        def bad(msg: str):
            raise MMDemoError("decode_option_invalid", f"Invalid decoding option: {msg}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if self.method not in METHODS:
            bad(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if not is_int(self.num_beams) or not 1 <= self.num_beams <= MAX_BEAMS:
            bad(f"{n('num_beams')} must be an integer from 1 to {MAX_BEAMS}; got {self.num_beams!r}.")
        if not is_int(self.max_length) or not 1 <= self.max_length <= MAX_LENGTH_CAP:
            bad(f"{n('max_length')} must be an integer from 1 to {MAX_LENGTH_CAP}; got {self.max_length!r}.")
        if not is_int(self.min_length) or not 0 <= self.min_length <= self.max_length:
            bad(f"min_length must be an integer from 0 to {n('max_length')} ({self.max_length}); got {self.min_length!r}.")
        if not is_num(self.temperature) or self.temperature <= 0:
            bad(f"temperature must be a number > 0; got {self.temperature!r}.")
        if not is_int(self.top_k) or self.top_k < 1:
            bad(f"top_k must be an integer >= 1; got {self.top_k!r}.")
        if not is_num(self.top_p) or not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1]; got {self.top_p!r}.")
        if not is_num(self.repetition_penalty) or self.repetition_penalty <= 0:
            bad(f"repetition_penalty must be a number > 0 (1 = off); got {self.repetition_penalty!r}.")
        if not is_num(self.length_penalty):
            bad(f"length_penalty must be a finite number; got {self.length_penalty!r}.")
        if not is_int(self.num_return) or not 1 <= self.num_return <= MAX_RETURN:
            bad(f"{n('num_return')} must be an integer from 1 to {MAX_RETURN}; got {self.num_return!r}.")
        if self.method == "beam" and self.num_return > self.num_beams:
            bad(f"{n('num_return')} ({self.num_return}) cannot exceed {n('num_beams')} ({self.num_beams}) "
                "for beam search.")
        if self.method == "greedy" and self.num_return != 1:
            bad(f"greedy decoding gives one caption per image; set {n('num_return')} to 1 or use beam search "
                "or sampling.")
        if self.seed is not None and not is_int(self.seed):
            bad(f"seed must be an integer or empty; got {self.seed!r}.")
        return self
