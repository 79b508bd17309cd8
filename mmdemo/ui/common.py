"""Helpers shared by the tab modules: error translation and formatting."""

from __future__ import annotations

import functools
import logging
import threading

import gradio as gr

from mmdemo.errors import MMDemoError

log = logging.getLogger(__name__)

# Model-bound listeners share one concurrency group so that two tabs don't run
# two forward passes at once on a 2-core laptop (the limit comes from settings).
MODEL_CONCURRENCY_ID = "model"


def user_errors(fn):
    """Turn the project's user-fixable errors into gr.Error (a message, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MMDemoError as exc:
            raise gr.Error(str(exc)) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug: log it fully, show the user something readable
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). The server is still running.") from None

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


def warn_all(notices) -> None:
    for notice in notices or ():
        gr.Warning(notice)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return ""
