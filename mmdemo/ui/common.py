"""Helpers shared by the tab modules: error translation, uploads, listeners and formatting."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import inspect
import logging
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from mmdemo.atomic import atomic_write_with
from mmdemo.errors import MMDemoError
from mmdemo.hashing import content_hash
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


def image_source(payload: Any) -> tuple[Any, str | None]:
    """An unprocessed image payload (FileData dict) -> (what load_image reads, display name).

    Listeners that take an image run with ``preprocess=False``: gradio's own image
    preprocessing opens every upload with PIL before the handler runs, so a corrupt,
    empty or bomb-sized file would fail there with gradio's message (handler name,
    component list, server path). Unprocessed, the handler gets the uploaded file's
    cache path and ``mmdemo.media.load_image`` says what is wrong in words."""
    if payload is None:
        return None, None
    if isinstance(payload, dict):
        name = payload.get("orig_name")
        if payload.get("path"):
            return payload["path"], name
        url = payload.get("url") or ""
        if url.startswith("data:") and "," in url:  # a pasted image sent inline
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False), name or "pasted image"
            except (binascii.Error, ValueError):
                raise MMDemoError("pasted_image_undecodable",
                                  "The pasted image could not be decoded; save it to a file and upload that.") from None
        return None, None
    return payload, None


def file_path(payload: Any) -> str | None:
    """An unprocessed single-file payload (audio, file) -> its uploaded path, or None."""
    if isinstance(payload, dict):
        return payload.get("path") or None
    return payload or None


class ResultFiles:
    """Files handed to clients as results (thumbnails, players), each written once.

    Returning a PIL image or a numpy clip makes gradio re-encode it on every event into
    ``<gradio cache>/<content hash>/image.webp`` *in place*: under overlapping identical
    requests a client downloading that file gets it truncated or empty. A path instead
    is copied into gradio's cache once (atomically; not again while present). The file
    here is named by a key for its content, written atomically and never rewritten, so
    a repeat answers from disk without decoding anything.

    The folder is a private temp dir (gradio serves returned files from the temp dir
    without ``allowed_paths``), removed with this object (it lives as long as its app's
    handlers) or at the latest when the process exits: results of uploads must not pile
    up in the user's cache. While the app runs, a file nobody asked for in ``max_age_s``
    (Gradio's own cache expiry) is deleted, at most every ``prune_every_s``: Gradio has
    long copied it into its cache, and a later request simply makes it again."""

    def __init__(self, prefix: str, max_age_s: float = 3600.0, prune_every_s: float = 600.0):
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.max_age_s, self.prune_every_s = float(max_age_s), float(prune_every_s)
        self._locks = [threading.Lock() for _ in range(16)]
        self._pruned_at = time.monotonic()
        self._prune_lock = threading.Lock()
        self._used: dict[str, float] = {}  # digest -> when it was last handed out (monotonic)
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def _lock_for(self, digest: str) -> threading.Lock:
        return self._locks[int(digest[:4], 16) % len(self._locks)]

    def prune(self, now: float | None = None) -> int:
        """Delete the files unused for ``max_age_s``; returns how many went."""
        cutoff, gone = (time.monotonic() if now is None else now) - self.max_age_s, 0
        for digest, used in list(self._used.items()):
            if used >= cutoff:
                continue
            with self._lock_for(digest):  # never while get() hands this file out
                if self._used.get(digest, cutoff) < cutoff:
                    for path in self.folder.glob(f"{digest}.*"):
                        path.unlink(missing_ok=True)
                        gone += 1
                    del self._used[digest]
        return gone

    def close(self) -> None:
        """Remove the folder now (the app is closing); later calls do nothing."""
        self._remove()

    def get(self, key: bytes, suffix: str, write: Callable[[Any], None]) -> str:
        """The path of the result for ``key`` (what it is made of and how), made now if
        new by ``write(f)``, which writes the file's bytes to the binary file ``f``."""
        with self._prune_lock:
            due = time.monotonic() - self._pruned_at >= self.prune_every_s
            if due:
                self._pruned_at = time.monotonic()
        if due:
            self.prune()
        digest = content_hash(key)[:40]
        path = self.folder / f"{digest}{suffix}"
        # One writer per name: two identical requests at once make it once, and a file
        # being served is never replaced (not even by identical bytes).
        with self._lock_for(digest):
            if not path.exists():
                atomic_write_with(path, write)
            self._used[digest] = time.monotonic()  # asked for: kept another max_age_s
        return str(path)


THUMB_PIXELS = 384  # longest side of result thumbnails sent to the browser


def thumbnail(results: ResultFiles, path: str) -> str:
    """The result thumbnail of the image file at ``path``: a WebP file named by the
    image's bytes and the thumbnail size, made on first use only."""
    from mmdemo.hashing import file_hash
    from mmdemo.media import load_image

    def write(f) -> None:
        im = load_image(path).image
        im.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
        im.save(f, format="WEBP")

    return results.get(f"thumbnail:{THUMB_PIXELS}:webp:{file_hash(path)}".encode(), ".webp", write)


def result_or_none(make: Callable[[ResultFiles, str], str], results: ResultFiles, path) -> str | None:
    """``make(results, path)`` (a thumbnail, a player), or None when the file at ``path`` is
    gone or unreadable: a saved index (--gallery-index) outlives the files it was built from."""
    if not path:
        return None
    try:
        return make(results, path)
    except (OSError, MMDemoError):
        return None


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
    first search, once per model), or a saved index in its place (``--gallery-index``),
    or the files a user uploaded.

    ``build`` and ``default_files`` are a task module's ``build_gallery`` and
    ``default_gallery_files``; ``desc`` labels the progress bar while uploads are encoded;
    ``saved`` is the gallery searched when nothing is uploaded, instead of the examples.
    """

    def __init__(self, build: Callable, default_files: Callable, cache_dir: Path, *, desc: str, prefix: str,
                 saved: Any = None):
        self.cache_dir = Path(cache_dir)
        self.folder: Path = default_files(self.cache_dir)
        self.default = per_model(lambda model: build([self.folder], model, cache_dir=self.cache_dir))
        self.saved = saved
        self._build, self._desc, self._prefix = build, desc, prefix

    def fallback(self, model) -> Any:
        """What a search without uploads goes through: the saved index, else the examples."""
        return self.saved if self.saved is not None else self.default(model)

    @contextlib.contextmanager
    def searched(self, files, model, progress) -> Iterator[Any]:
        """The gallery built from ``files``, or the default one when there are none.

        Zips are extracted into a temporary folder that lives until the ``with`` block
        ends: read what the results need (thumbnails, players) inside it.
        """
        if not files:
            yield self.fallback(model)
            return
        extract_dir = Path(tempfile.mkdtemp(prefix=self._prefix))
        try:
            yield self._build(files, model, cache_dir=self.cache_dir, extract_dir=extract_dir,
                              progress=lambda done, total: progress((done, total), desc=self._desc))
        finally:
            shutil.rmtree(extract_dir, ignore_errors=True)


class SessionValues:
    """One value per browser or client session (Gradio's ``session_hash``), kept
    server-side for ``max_age_s`` after its last use, at most ``max_sessions`` of them.

    What a gr.State does, for an API endpoint that must not return a State: Gradio
    6.31's MCP server fails on an endpoint that does (``mcp.py`` ``pop_returned_state``
    pops by an index the client's data no longer has)."""

    def __init__(self, max_age_s: float = 3600.0, max_sessions: int = 256):
        self.max_age_s, self.max_sessions = float(max_age_s), int(max_sessions)
        self._values: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(request) -> str | None:
        from mmdemo.sessions import session_of

        return session_of(request) if request is not None else None

    def put(self, request, value: Any) -> None:
        key = self._key(request)
        if key is None:
            return
        now = time.monotonic()
        with self._lock:
            self._values.pop(key, None)
            self._values[key] = (value, now)
            stale = [k for k, (_, t) in self._values.items() if now - t > self.max_age_s]
            for k in stale:
                del self._values[k]
            while len(self._values) > self.max_sessions:  # the least recently stored go first
                del self._values[next(iter(self._values))]

    def get(self, request, default: Any = None) -> Any:
        key = self._key(request)
        with self._lock:
            found = self._values.get(key) if key is not None else None
            if found is None or time.monotonic() - found[1] > self.max_age_s:
                return default
            return found[0]


def warn_all(notices) -> None:
    for notice in notices or ():
        gr.Warning(notice)


def notes_markdown(notices) -> str:
    """Notices as a Markdown 'Notes' list to append to a result (empty when there are none):
    beside the answer they qualify, not only in a toast that fades."""
    notices = [str(n) for n in dict.fromkeys(notices or [])]
    return "\n\n**Notes**\n" + "\n".join(f"- {n}" for n in notices) if notices else ""
