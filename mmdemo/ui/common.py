"""Helpers shared by the tab modules: error translation, uploads, listeners and formatting."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from mmdemo.errors import MMDemoError
from mmdemo.media import fmt_bytes  # noqa: F401 - re-exported for the tabs

log = logging.getLogger(__name__)

# Model-bound listeners share one concurrency group so that two tabs don't run
# two forward passes at once on a 2-core laptop (the limit comes from settings).
MODEL_CONCURRENCY_ID = "model"


def _as_gr_error(exc: Exception, fn) -> gr.Error:
    """The gr.Error the user sees for ``exc`` raised by handler ``fn``, logged once.

    A user error (MMDemoError) is expected: one server log line with its code, no
    traceback. Anything else is a bug in mmdemo: its full traceback goes to the log.
    """
    if isinstance(exc, MMDemoError):
        # WARNING, not INFO: the app configures no logging, and Python's last-resort
        # handler shows WARNING and above, so this is the level that reaches the console.
        log.warning("user error [%s] in %s: %s", exc.code, fn.__name__, " ".join(str(exc).splitlines()))
        # print_exception=False: gradio would otherwise print a traceback for every gr.Error.
        return gr.Error(str(exc), print_exception=False)
    log.exception("handler %s failed", fn.__name__)  # the bug's one traceback
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). The server is still running.",
                    print_exception=False)


def user_errors(fn):
    """Turn the project's user-fixable errors into gr.Error (a message, no traceback).

    Works for plain handlers and for generator handlers (gradio streams those, so the
    wrapper must itself be a generator function)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _as_gr_error(exc, fn) from None

        return stream_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _as_gr_error(exc, fn) from None

    return wrapper


def per_model(build):
    """Memoise ``build(model)`` per ``model.model_id``, thread-safe: the default gallery
    is encoded once per model, even when several users search at the same moment."""
    built: dict = {}
    lock = threading.Lock()

    def get(model):
        with lock:
            if model.model_id not in built:
                built[model.model_id] = build(model)
            return built[model.model_id]

    return get


def model_events(triggers: Sequence[Callable], fn: Callable, inputs, outputs, *, api_name: str, **kwargs) -> list:
    """Wire ``fn`` to every trigger (e.g. a button's ``.click`` and a textbox's ``.submit``)
    in the shared model concurrency group. Only the first is an API endpoint (gradio
    would otherwise name the others ``/fn_1``...). Returns each trigger's event, to chain on."""
    return [trigger(fn, inputs, outputs, api_name=api_name if n == 0 else False,
                    concurrency_id=MODEL_CONCURRENCY_ID, **kwargs) for n, trigger in enumerate(triggers)]


class Galleries:
    """What a tab searches: its example gallery (files found now, cheaply; encoded on
    first search, once per model) or the files a user uploaded.

    ``build`` and ``default_files`` are a task module's ``build_gallery`` and
    ``default_gallery_files``; ``desc`` labels the progress bar while uploads are encoded.
    """

    def __init__(self, build: Callable, default_files: Callable, cache_dir: Path, *, desc: str, prefix: str):
        self.cache_dir = Path(cache_dir)
        self.folder: Path = default_files(self.cache_dir)
        self.default = per_model(lambda model: build([self.folder], model, cache_dir=self.cache_dir))
        self._build, self._desc, self._prefix = build, desc, prefix

    @contextlib.contextmanager
    def searched(self, files, model, progress) -> Iterator[Any]:
        """The gallery built from ``files``, or the default one when there are none.

        Zips are extracted into a temporary folder that lives until the ``with`` block
        ends: read what the results need (thumbnails, players) inside it.
        """
        if not files:
            yield self.default(model)
            return
        extract_dir = Path(tempfile.mkdtemp(prefix=self._prefix))
        try:
            yield self._build(files, model, cache_dir=self.cache_dir, extract_dir=extract_dir,
                              progress=lambda done, total: progress((done, total), desc=self._desc))
        finally:
            shutil.rmtree(extract_dir, ignore_errors=True)


def warn_all(notices) -> None:
    for notice in notices or ():
        gr.Warning(notice)
