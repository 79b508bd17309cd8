"""Concurrent encode calls share one model call (mmdemo.batching) and each caller still
gets exactly its own answer, or the model's error; a lone call runs at once, as asked."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from mmdemo.batching import BatchedHandle, MicroBatcher, batched
from mmdemo.catalog import load_catalog
from mmdemo.errors import MMDemoError
from mmdemo.handles import AudioHandle, CaptionerHandle, ClipHandle
from mmdemo.registry import Registry


class Spy:
    """An encode method that records each call (its inputs and thread) and can hold the
    first call open until the test lets it end, so requests pile up behind it."""

    def __init__(self, fn, *, hold_first: bool = False):
        self.fn, self.calls, self.threads = fn, [], []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items, *args, **kwargs):
        self.calls.append(list(items))
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.release.wait(30)
        return self.fn(items, *args, **kwargs)


def _rows(items, batch_size=64):
    """A fake embedding: one row per input, a function of that input alone."""
    if any(x < 0 for x in items):
        raise MMDemoError("model_refused", "The model refused a negative input.")
    return np.array([[x, x * x, 1.0] for x in items], np.float32)


def _pile_up(batcher: MicroBatcher, spy: Spy, first, rest) -> tuple[dict, dict]:
    """Call ``batcher(first)`` and, while the model holds it, ``batcher(r)`` for each of
    ``rest`` from its own thread; returns ({i: result}, {i: error}) once all end."""
    results, errors = {}, {}

    def call(i, items):
        try:
            results[i] = batcher(items)
        except Exception as exc:  # noqa: BLE001 - the test looks at which error came back
            errors[i] = exc

    threads = [threading.Thread(target=call, args=(0, first))]
    threads[0].start()
    assert spy.entered.wait(30)
    for i, items in enumerate(rest, 1):
        threads.append(threading.Thread(target=call, args=(i, items)))
        threads[-1].start()
    deadline = time.monotonic() + 30
    while batcher.queued < len(rest) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert batcher.queued == len(rest)
    spy.release.set()
    for t in threads:
        t.join(30)
    return results, errors


def test_requests_waiting_for_the_model_share_its_next_call():
    spy = Spy(_rows, hold_first=True)
    batcher = MicroBatcher(spy, max_items=64)
    rest = [[float(i)] if i % 2 else [float(i), i + 0.5, i + 0.25] for i in range(1, 9)]
    results, errors = _pile_up(batcher, spy, [0.0], rest)
    assert not errors
    assert len(spy.calls) == 2  # the first alone, then every waiting request in one call
    for i, items in enumerate([[0.0], *rest]):
        np.testing.assert_array_equal(results[i], _rows(items))


def test_a_batch_takes_at_most_max_items_and_the_rest_wait_for_the_next():
    spy = Spy(_rows, hold_first=True)
    batcher = MicroBatcher(spy, max_items=4)
    rest = [[float(i), i + 0.5] for i in range(1, 6)]  # 10 inputs: batches of 4, 4, 2
    results, errors = _pile_up(batcher, spy, [0.0], rest)
    assert not errors and all(len(c) <= 4 for c in spy.calls) and len(spy.calls) == 4
    for i, items in enumerate([[0.0], *rest]):
        np.testing.assert_array_equal(results[i], _rows(items))


def test_an_input_the_model_refuses_fails_only_its_own_request():
    spy = Spy(_rows, hold_first=True)
    batcher = MicroBatcher(spy, max_items=64)
    results, errors = _pile_up(batcher, spy, [0.0], [[1.0], [-1.0], [2.0]])
    assert set(errors) == {2} and errors[2].code == "model_refused"
    for i, items in ((0, [0.0]), (1, [1.0]), (3, [2.0])):
        np.testing.assert_array_equal(results[i], _rows(items))
    np.testing.assert_array_equal(batcher([3.0, 4.0]), _rows([3.0, 4.0]))


def test_a_merged_output_with_the_wrong_row_count_never_hands_out_shifted_rows():
    def drops_a_row(items, batch_size=64):
        return _rows(items)[:-1] if len(items) > 1 else _rows(items)

    spy = Spy(drops_a_row, hold_first=True)
    results, errors = _pile_up(MicroBatcher(spy, max_items=64), spy, [0.0], [[1.0, 2.0], [3.0, 4.0]])
    # Merged, the call loses a row: refused; alone, each request loses one too: refused as
    # well. Nobody gets rows that belong to another request.
    for i in (1, 2):
        assert i in errors and "rows for" in str(errors[i])


def test_a_lone_call_runs_at_once_in_its_own_thread():
    spy = Spy(_rows)
    batcher = MicroBatcher(spy, max_items=64)
    np.testing.assert_array_equal(batcher([5.0, 6.0]), _rows([5.0, 6.0]))
    assert spy.calls == [[5.0, 6.0]] and spy.threads == [threading.get_ident()]


def test_calls_with_their_own_options_or_as_big_as_a_batch_run_as_asked():
    seen = []
    spy = Spy(lambda items, batch_size=64, progress=None: (progress(len(items), len(items)), _rows(items))[1])
    batcher = MicroBatcher(spy, max_items=4)
    batcher([1.0], progress=lambda done, total: seen.append((done, total)))
    batcher([1.0, 2.0, 3.0, 4.0, 5.0], batch_size=2, progress=lambda *a: None)
    assert seen == [(1, 1)] and [len(c) for c in spy.calls] == [1, 5]


def test_tuple_outputs_are_split_per_request():
    spy = Spy(lambda items: (_rows(items), np.arange(len(items) * 2).reshape(-1, 2) + 10 * np.array(items)[:, None]),
              hold_first=True)
    batcher = MicroBatcher(spy, max_items=64)
    results, _ = _pile_up(batcher, spy, [0.0], [[1.0, 2.0], [3.0]])
    pooled, extra = results[1]
    np.testing.assert_array_equal(pooled, _rows([1.0, 2.0]))
    assert extra.shape == (2, 2) and results[2][0].shape == (1, 3)


@pytest.fixture(scope="module")
def tiny():
    return Registry(load_catalog(), device="cpu", profile="tiny")


def _images(n):
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(n)]


def test_wrapped_handles_keep_their_protocols(tiny):
    clip, captioner, audio = (tiny.for_slot(s) for s in ("clip", "captioner", "audio"))
    assert all(isinstance(h, BatchedHandle) for h in (clip, captioner, audio))
    assert isinstance(clip, ClipHandle) and isinstance(captioner, CaptionerHandle) and isinstance(audio, AudioHandle)
    assert clip.model_id == tiny.catalog.entry(tiny.profile.clip).model_id and clip.modules()


def test_batching_off_hands_out_the_plain_handle():
    reg = Registry(load_catalog(), device="cpu", profile="tiny", batch_max=1)
    clip = reg.for_slot("clip")
    assert not isinstance(clip, BatchedHandle) and isinstance(clip, ClipHandle)
    assert batched(clip, 1) is clip


@pytest.mark.parametrize("method", ["encode_images", "encode_texts", "encode_waves"])
def test_concurrent_calls_to_a_real_model_match_one_at_a_time(tiny, method):
    """Eight threads encoding at once get what each would alone, from fewer model calls."""
    handle = tiny.for_slot("audio" if method == "encode_waves" else "clip")
    rng = np.random.default_rng(2)
    inputs = {
        "encode_images": [_images(1 + i % 3) for i in range(8)],
        "encode_texts": [[f"a {c} star", f"{i} small squares"][: 1 + i % 2]
                         for i, c in enumerate(["red", "blue", "green", "white"] * 2)],
        "encode_waves": [[rng.standard_normal(4000 + 500 * i).astype(np.float32)] for i in range(8)],
    }[method]
    alone = [getattr(handle, method)(x) for x in inputs]
    spy = Spy(getattr(handle, method), hold_first=True)
    wrapped = BatchedHandle(type("H", (), {method: spy})(), max_items=64)
    batcher = getattr(wrapped, method)
    results, errors = _pile_up(batcher, spy, inputs[0], inputs[1:])
    assert not errors and len(spy.calls) == 2
    for i, expected in enumerate(alone):
        np.testing.assert_allclose(results[i], expected, atol=1e-5)


def _scenes(n):
    from mmdemo.toyworld import scenes

    rng = np.random.default_rng(3)
    return [Image.fromarray(scenes.render_scene(scenes.sample_scene(rng))) for _ in range(n)]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_concurrent_captions_with_the_same_options_share_a_decoder_call(tiny, method):
    from mmdemo.models.decode_options import DecodeOptions

    captioner = tiny.for_slot("captioner").wrapped
    options = DecodeOptions(method=method, num_beams=3, max_length=20)
    images = [[im] for im in _scenes(6)]
    alone = [captioner.generate(x, options) for x in images]
    spy = Spy(captioner.generate, hold_first=True)
    wrapped = BatchedHandle(type("H", (), {"generate": spy})(), max_items=64)
    first = threading.Thread(target=wrapped.generate, args=(images[0], options))
    first.start()
    assert spy.entered.wait(30)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, wrapped.generate(images[i], options)))
               for i in range(1, 6)]
    for t in threads:
        t.start()
    (batcher,) = wrapped._batchers["generate"]._by_options.values()
    deadline = time.monotonic() + 30
    while batcher.queued < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    spy.release.set()
    for t in [first, *threads]:
        t.join(60)
    assert [len(c) for c in spy.calls] == [1, 5]  # the five waiting requests: one decoder call
    assert [results[i] for i in range(1, 6)] == alone[1:]


def test_sampled_captions_and_other_options_never_merge():
    from mmdemo.models.decode_options import DecodeOptions

    calls = []
    wrapped = BatchedHandle(type("H", (), {"generate": lambda self_, ims, o: calls.append((len(ims), o.method))
                                                        or [[o.method]] * len(ims)})(), max_items=64)
    sampled = DecodeOptions(method="top_k", seed=7)
    assert wrapped.generate(["img"], sampled) == [["top_k"]]
    assert wrapped._batchers["generate"]._by_options == {}  # a seeded sample always runs alone
    assert wrapped.generate(["a", "b"], DecodeOptions(method="beam")) == [["beam"], ["beam"]]
    assert wrapped.generate(["a"], DecodeOptions(method="beam", num_beams=5)) == [["beam"]]
    assert len(wrapped._batchers["generate"]._by_options) == 2  # one batcher per set of options
    # What beam search never reads (a seed, a temperature) does not split the batches.
    assert wrapped.generate(["a"], DecodeOptions(method="beam", num_beams=5, seed=3, temperature=0.5)) == [["beam"]]
    assert len(wrapped._batchers["generate"]._by_options) == 2


def test_idle_caption_batchers_make_room_for_new_options():
    from mmdemo import batching
    from mmdemo.models.decode_options import DecodeOptions

    wrapped = BatchedHandle(type("H", (), {"generate": lambda self_, ims, o: [[str(o.max_length)]] * len(ims)})(),
                            max_items=64)
    for n in range(1, batching._MAX_OPTION_SETS + 10):  # more option sets than are kept
        assert wrapped.generate(["a"], DecodeOptions(method="greedy", max_length=n)) == [[str(n)]]
    assert 1 <= len(wrapped._batchers["generate"]._by_options) <= batching._MAX_OPTION_SETS
    newest = ("greedy", 3, batching._MAX_OPTION_SETS + 9)  # method, num_beams, max_length
    assert newest in {key[:3] for key in wrapped._batchers["generate"]._by_options}  # batched, not run alone
