"""Micro-batching in front of a loaded handle: concurrent encode calls share one model call.

When several requests (gradio worker threads) ask the same handle to encode at the same
moment, one forward pass over all their inputs costs far less than one pass each. The
wrapper batches leader/follower style, with no wait window: a call that finds the method
idle runs at once, alone; calls that arrive while a pass is running queue up, and when it
ends the first of them runs every queued input (up to ``max_items``) in one call and hands
each caller its own rows. A lone call is therefore never delayed, and under load the batch
size grows with the load.

Errors stay per request: the task layer validates each request's inputs before it encodes
them, and should a merged call still fail, each request of that batch runs alone, so only
the one that fails alone gets an error. A merged output must have one row per input.

The wrapper is a handle too: it delegates every other attribute to the wrapped handle,
so the protocols of :mod:`mmdemo.handles` hold for it (code asks for a protocol, never for
a backend's concrete class).
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# The encode methods that take a sequence of inputs first and return rows (an array, or a
# tuple of arrays) in the same order: what can be concatenated and split back.
BATCHED_METHODS = ("encode_images", "encode_image_tokens", "encode_texts", "encode_text_tokens", "encode_waves",
                   "encode_wave_tokens")


class _Request:
    __slots__ = ("items", "done", "result", "error", "batch")

    def __init__(self, items: list):
        self.items = items
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.batch: list[_Request] | None = None  # set when this request is told to run a batch


def _split(out: Any, sizes: list[int]) -> list[Any]:
    """The rows of one merged output for each request, in order."""
    if isinstance(out, tuple):
        return [tuple(parts) for parts in zip(*(_split(o, sizes) for o in out))]
    bounds = np.cumsum(sizes)[:-1]
    if isinstance(out, np.ndarray):
        return np.split(out, bounds)
    return [out[a:b] for a, b in zip([0, *bounds], [*bounds, len(out)])]


class MicroBatcher:
    """Merges concurrent calls of one encode method ``fn(items) -> rows``."""

    def __init__(self, fn: Callable, max_items: int):
        self._fn, self._max = fn, int(max_items)
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._running = False

    @property
    def queued(self) -> int:
        """Requests waiting for the running call to end (they form the next batch)."""
        with self._lock:
            return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether a call is running or waiting (a batcher that is not can be dropped)."""
        with self._lock:
            return self._running or bool(self._queue)

    def __call__(self, items: Sequence, *args, **kwargs):
        # A call with options of its own (a progress callback) or as big as a batch runs
        # as asked, beside the batches; batch_size only chunks, so merged calls drop it.
        if args or set(kwargs) - {"batch_size"} or not 0 < len(items) < self._max:
            return self._fn(items, *args, **kwargs)
        request = _Request(list(items))
        with self._lock:
            lead = not self._running
            if lead:
                self._running = True
                request.batch = [request]
            else:
                self._queue.append(request)
        if not lead:
            request.done.wait()
        if request.batch is not None:  # this thread runs a batch (its own request is in it)
            self._run(request.batch)
        if request.error is not None:
            raise request.error
        return request.result

    def _run(self, batch: list[_Request]) -> None:
        try:
            try:
                self._answer(batch)
            except Exception:  # noqa: BLE001 - which request it was is found out below
                if len(batch) == 1:
                    raise
                # One request's input (or the merged size: out of memory) broke the call:
                # each request runs alone, so only the one that fails alone gets an error.
                log.warning("a merged call of %d requests failed; running them one at a time", len(batch),
                            exc_info=True)
                for r in batch:
                    try:
                        self._answer([r])
                    except Exception as exc:  # noqa: BLE001 - handed to its own caller
                        r.error = exc
        except BaseException as exc:  # a lone request's own error, or an interrupt: nobody is left unanswered
            for r in batch:
                if r.result is None and r.error is None:
                    r.error = exc
        finally:
            self._hand_over()
            for r in batch:
                r.batch = None
                r.done.set()

    def _answer(self, batch: list[_Request]) -> None:
        sizes = [len(r.items) for r in batch]
        out = self._fn([item for r in batch for item in r.items])
        for part in out if isinstance(out, tuple) else (out,):
            if len(part) != sum(sizes):  # rows would shift from one request to another
                raise RuntimeError(f"{getattr(self._fn, '__name__', 'encode')} returned {len(part)} rows for "
                                   f"{sum(sizes)} inputs")
        for r, rows in zip(batch, _split(out, sizes)):
            r.result = rows

    def _hand_over(self) -> None:
        """Give what queued meanwhile (up to max_items) to its first request to run."""
        with self._lock:
            if not self._queue:
                self._running = False
                return
            taken, total = 0, 0
            while taken < len(self._queue) and (taken == 0 or total + len(self._queue[taken].items) <= self._max):
                total += len(self._queue[taken].items)
                taken += 1
            batch, self._queue = self._queue[:taken], self._queue[taken:]
        batch[0].batch = batch
        batch[0].done.set()


# Captions cost far more per image than embeddings (a decoder pass per word and beam):
# fewer images per merged call keep one caption request from waiting on a long batch.
MAX_CAPTION_BATCH = 16
# Decoding methods whose captions do not depend on what else is in the batch. Sampling
# (top_k, top_p) draws from one seeded generator per call: merged, a seed would no
# longer give the same caption, so sampled requests run alone.
DETERMINISTIC_METHODS = ("greedy", "beam")
# What greedy and beam decoding read of DecodeOptions (seed, temperature, top_k and top_p
# only shape sampling): requests that differ elsewhere still share a call.
DECODING_FIELDS = ("method", "num_beams", "max_length", "min_length", "repetition_penalty", "length_penalty",
                   "num_return")
_MAX_OPTION_SETS = 64  # batchers kept for distinct options; idle ones make room for new ones


class CaptionBatcher:
    """Merges concurrent ``generate(images, options)`` calls that ask for the same
    deterministic decoding: one MicroBatcher per set of decoding options."""

    def __init__(self, fn: Callable, max_items: int):
        self._fn, self._max = fn, max(1, min(int(max_items), MAX_CAPTION_BATCH))
        self._lock = threading.Lock()
        self._by_options: dict[tuple, MicroBatcher] = {}

    def __call__(self, images: Sequence, options: Any = None, *args, **kwargs):
        method = getattr(options, "method", None)
        if args or kwargs or method not in DETERMINISTIC_METHODS or self._max <= 1:
            return self._fn(images, options, *args, **kwargs)
        key = tuple(getattr(options, f, None) for f in DECODING_FIELDS)
        with self._lock:
            batcher = self._by_options.get(key)
            if batcher is None:
                if len(self._by_options) >= _MAX_OPTION_SETS:  # forget the idle ones
                    self._by_options = {k: b for k, b in self._by_options.items() if b.busy}
                if len(self._by_options) < _MAX_OPTION_SETS:
                    mine = copy.copy(options)  # the batch decodes with these, whoever changes theirs
                    batcher = self._by_options[key] = MicroBatcher(lambda items: self._fn(items, mine), self._max)
        return batcher(images) if batcher is not None else self._fn(images, options)


class BatchedHandle:
    """A handle whose encode methods (and deterministic caption generation) batch
    concurrent calls; everything else is the wrapped handle's own (attributes,
    ``modules()``, ``zero_shot``...)."""

    def __init__(self, handle: Any, max_items: int):
        self._handle = handle
        self._batchers = {name: MicroBatcher(getattr(handle, name), max_items)
                          for name in BATCHED_METHODS if callable(getattr(handle, name, None))}
        if callable(getattr(handle, "generate", None)):
            self._batchers["generate"] = CaptionBatcher(handle.generate, max_items)

    def __getattr__(self, attr: str) -> Any:
        batcher = self.__dict__.get("_batchers", {}).get(attr)
        if batcher is not None:
            return batcher
        return getattr(self.__dict__["_handle"], attr)

    @property
    def wrapped(self) -> Any:
        """The backend's own handle (for code that must know which backend it is: tests)."""
        return self._handle

    def __repr__(self) -> str:
        return f"BatchedHandle({self._handle!r})"


def unwrap(handle: Any) -> Any:
    """The backend's own handle behind a batching wrapper (or ``handle`` itself)."""
    return handle.wrapped if isinstance(handle, BatchedHandle) else handle


def batched(handle: Any, max_items: int) -> Any:
    """``handle`` with batching encode methods, or itself when ``max_items <= 1`` (off)."""
    return BatchedHandle(handle, max_items) if max_items > 1 else handle
