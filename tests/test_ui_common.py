"""ui.common.user_errors: how handler errors reach the user and the server log."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from mmdemo.errors import MMDemoError
from mmdemo.ui.common import user_errors


def _user_error():
    raise MMDemoError("image_too_large", "That image is too large.\nResize it and try again.")


def _bug():
    raise KeyError("oops")


def _stream_user_error():
    yield 1
    raise MMDemoError("no_rows", "The CSV has no rows.")


def _stream_bug():
    yield 1
    raise ZeroDivisionError("boom")


def _records(caplog):
    return [r for r in caplog.records if r.name == "mmdemo.ui.common"]


def test_user_error_logs_one_line_with_its_code_and_no_traceback(caplog):
    caplog.set_level(logging.INFO, logger="mmdemo.ui.common")
    with pytest.raises(gr.Error) as err:
        user_errors(_user_error)()
    assert err.value.message == "That image is too large.\nResize it and try again."  # the user sees it all
    (rec,) = _records(caplog)
    assert rec.levelno == logging.WARNING
    assert "[image_too_large]" in rec.getMessage() and "_user_error" in rec.getMessage()
    assert "\n" not in rec.getMessage()
    assert rec.exc_info is None and "Traceback" not in caplog.text


def test_bug_logs_a_traceback(caplog):
    caplog.set_level(logging.INFO, logger="mmdemo.ui.common")
    with pytest.raises(gr.Error, match=r"Something went wrong \(KeyError"):
        user_errors(_bug)()
    (rec,) = _records(caplog)
    assert rec.levelno == logging.ERROR and rec.exc_info is not None
    assert "Traceback" in caplog.text


def test_generator_handlers_stream_and_translate(caplog):
    caplog.set_level(logging.INFO, logger="mmdemo.ui.common")
    gen = user_errors(_stream_user_error)()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="The CSV has no rows."):
        next(gen)
    (rec,) = _records(caplog)
    assert "[no_rows]" in rec.getMessage() and rec.exc_info is None

    caplog.clear()
    gen = user_errors(_stream_bug)()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="ZeroDivisionError"):
        next(gen)
    (rec,) = _records(caplog)
    assert rec.exc_info is not None


def test_gr_error_passes_through_unlogged(caplog):
    def handler():
        raise gr.Error("already worded")

    caplog.set_level(logging.INFO, logger="mmdemo.ui.common")
    with pytest.raises(gr.Error, match="already worded"):
        user_errors(handler)()
    assert not _records(caplog)


def test_result_files_unused_for_an_hour_are_pruned_and_made_again(tmp_path):
    import os
    import time

    from mmdemo.ui.common import ResultFiles

    files = ResultFiles(prefix="mmdemo-test-results-", max_age_s=3600, prune_every_s=3600)
    made = []

    def write(text):
        def w(f):
            made.append(text)
            f.write(text.encode())
        return w

    old = files.get(b"old", ".txt", write("old"))
    kept = files.get(b"kept", ".txt", write("kept"))
    files._used[os.path.basename(old)[:40]] -= 3700  # handed out over an hour ago
    assert files.prune() == 1
    assert not os.path.exists(old) and os.path.exists(kept)
    assert files.prune(now=time.monotonic() + 3599) == 0  # the kept one: not yet an hour
    assert files.get(b"old", ".txt", write("old")) == old and open(old).read() == "old"
    assert files.get(b"kept", ".txt", write("kept")) == kept
    assert made == ["old", "kept", "old"]  # made again on demand; a live one never rewritten
    files.prune_every_s, files._used[os.path.basename(old)[:40]] = 0, time.monotonic() - 3700
    files.get(b"kept", ".txt", write("kept"))  # serving prunes on its own, when a prune is due
    assert not os.path.exists(old)
    files.close()
    assert not files.folder.exists()
