"""The one gr.Blocks app: every tab shares one registry; nothing launches here."""

from __future__ import annotations

import contextlib
import hmac
import html
import secrets
import signal
import threading
import time

import gradio as gr

from mmdemo.registry import Registry, registry_from_settings
from mmdemo.settings import Settings

TITLE = "mmdemo — try multimodal models"
# Tab modules in mmdemo/ui/, in page order; each exposes build(registry, settings), which may
# return a callable that frees what the tab made (temp folders) when the app closes.
TABS = ("image", "audio", "mixed_gallery", "classify", "folders", "compare", "models")
# Tabs whose build also takes the saved indexes of --gallery-index (opened once, here).
SAVED_INDEX_TABS = ("image", "audio")
# Uploads and results in Gradio's cache: every 10 minutes, delete those older than an hour;
# all of them when the server stops.
DELETE_CACHE = (600, 3600)


def build_demo(settings: Settings | None = None, registry: Registry | None = None) -> gr.Blocks:
    """Build the app for ``settings`` (defaults: the tiny profile); loads no weights.
    ``close_demo(demo)`` (run by ``launch`` when the server stops) removes its temp folders."""
    import importlib

    from mmdemo.tasks.saved_index import open_gallery_indexes

    settings = settings or Settings()
    registry = registry or registry_from_settings(settings)
    # Memory-mapped, before anything is laid out: a missing or foreign file stops start-up
    # with its MMDemoError (app.py prints it), not at a user's first search.
    saved = open_gallery_indexes(settings.gallery_indexes)
    closers = []
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"# {TITLE}\nProfile **{registry.profile_name}**. Models load on first use; "
                    "the Models tab shows what is loaded.")
        with gr.Tabs():
            for tab in TABS:
                extra = {"saved_indexes": saved} if tab in SAVED_INDEX_TABS else {}
                closer = importlib.import_module(f"mmdemo.ui.{tab}").build(registry, settings, **extra)
                if callable(closer):
                    closers.append(closer)
    demo.mmdemo_registry = registry  # for tests and the launcher; handlers use closures
    demo.mmdemo_closers = closers
    return demo


def close_demo(demo: gr.Blocks) -> None:
    """Remove what the tabs made outside Gradio's cache (each at most once; also at exit)."""
    for close in getattr(demo, "mmdemo_closers", ()):
        close()


# ----------------------------------------------------------------------------- --auth

SESSION_COOKIE = "mmdemo-session"
SESSION_MAX_AGE_S = 7 * 24 * 3600
LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mmdemo — log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;margin:.4rem 0;font-size:1rem}}input{{padding:.4rem}}
.error{{color:#b00020}}</style></head>
<body><h1>mmdemo</h1><p>This app needs a login.</p>{error}
<form method="post" action="{action}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form></body></html>
"""


class LoginGate:
    """``--auth`` without Gradio's login page, which embeds the whole API description.

    Gradio asks :meth:`user` (its ``auth_dependency``) on every route, the page included,
    and answers 401 before rendering anything when it returns None. This gate's own
    routes come first: ``POST /login`` takes the form fields gradio_client's
    ``Client(url, auth=(user, password))`` posts and sets a session cookie; ``GET /login``
    and any refused page request (a browser's) get a small login form; ``/logout`` ends
    the session. Sessions live in memory: a restart asks everyone to log in again."""

    def __init__(self, account: tuple[str, str]):
        self._account = account
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def user(self, request) -> str | None:
        for name in (SESSION_COOKIE, f"{SESSION_COOKIE}-insecure"):
            token = request.cookies.get(name)
            with self._lock:
                found = self._sessions.get(token) if token else None
                if found and time.time() - found[1] > SESSION_MAX_AGE_S:
                    del self._sessions[token]
                    found = None
            if found:
                return found[0]
        return None

    def _valid(self, username: str, password: str) -> bool:
        user, pw = self._account
        same_user = hmac.compare_digest(username.encode(), user.encode())
        return hmac.compare_digest(password.encode(), pw.encode()) and same_user

    @staticmethod
    def _wants_html(request) -> bool:
        return "text/html" in request.headers.get("accept", "")

    def _form(self, request, error: str = "", status: int = 200):
        from starlette.responses import HTMLResponse

        note = f'<p class="error">{html.escape(error)}</p>' if error else ""
        # Absolute from the app's root: the form may answer a refused request at any
        # path (/gradio_api/info), where a relative "login" would post elsewhere.
        action = html.escape(request.scope.get("root_path", "").rstrip("/") + "/login")
        return HTMLResponse(LOGIN_PAGE.format(error=note, action=action), status_code=status)

    async def login(self, request):
        from starlette.responses import JSONResponse, RedirectResponse

        form = await request.form()
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        if not self._valid(username, password):
            if self._wants_html(request):
                return self._form(request, "Wrong username or password.", 401)
            return JSONResponse({"detail": "Incorrect credentials."}, status_code=401)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (username, time.time())
        # A browser goes back to the app; gradio_client wants a 2xx and keeps the cookies.
        response = (RedirectResponse("./", status_code=303) if self._wants_html(request)
                    else JSONResponse({"success": True}))
        # Two cookies, as Gradio sets: SameSite=None (needs https) for an app in an iframe
        # (a Space), and a Lax one for plain http on a laptop.
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="none",
                            secure=True)
        response.set_cookie(f"{SESSION_COOKIE}-insecure", token, max_age=SESSION_MAX_AGE_S, httponly=True)
        return response

    def login_page(self, request):
        from starlette.responses import RedirectResponse

        return RedirectResponse("./", status_code=303) if self.user(request) else self._form(request)

    def logout(self, request):
        from starlette.responses import RedirectResponse

        with self._lock:
            for name in (SESSION_COOKIE, f"{SESSION_COOKIE}-insecure"):
                self._sessions.pop(request.cookies.get(name), None)
        response = RedirectResponse("./", status_code=303)
        for name in (SESSION_COOKIE, f"{SESSION_COOKIE}-insecure"):
            response.delete_cookie(name)
        return response

    def refused(self, request, exc):
        """Gradio's 401s: a browser gets the login form, an API caller the usual JSON."""
        from starlette.responses import JSONResponse

        if self._wants_html(request) and request.method in ("GET", "HEAD"):
            return self._form(request, status=401)
        return JSONResponse({"detail": exc.detail}, status_code=401, headers=getattr(exc, "headers", None))

    def app_kwargs(self) -> dict:
        from starlette.routing import Route

        return {"routes": [Route("/login", self.login, methods=["POST"]),
                           Route("/login", self.login_page, methods=["GET"]),
                           Route("/logout", self.logout, methods=["GET"])],
                "exception_handlers": {401: self.refused}}


def launch(demo: gr.Blocks, settings: Settings, **overrides):
    """Queue and launch with the settings' limits (upload size, queue size, auth, share);
    the tabs' temp folders are removed when the server stops."""
    # Model listeners share one concurrency group sized by the default limit: several
    # requests run at once so that the registry's batching can merge their model calls.
    demo.queue(max_size=settings.queue_size,
               default_concurrency_limit=settings.model_concurrency(demo.mmdemo_registry.device))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            close_demo(demo)

    app_kwargs = {"lifespan": lifespan}
    kwargs = dict(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=settings.max_upload_bytes,
        show_error=True,
        app_kwargs=app_kwargs,
        # Explicit, so Gradio's GRADIO_MCP_SERVER variable can't open an MCP route unasked.
        mcp_server=settings.mcp,
    )
    if settings.auth:
        gate = LoginGate(settings.auth)
        app_kwargs.update(gate.app_kwargs())
        kwargs["auth_dependency"] = gate.user
    kwargs.update(overrides)
    if not kwargs.get("prevent_thread_lock") and threading.current_thread() is threading.main_thread():
        # docker, Spaces and systemd stop a server with SIGTERM, which would kill it outright:
        # as Ctrl-C, it closes the server, so the lifespan's cleanup and delete_cache run.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return demo.launch(**kwargs)
    except KeyboardInterrupt:
        # A signal that lands after the server started but before Gradio's wait loop
        # (which catches it itself) would end Python by SIGINT with the cleanup skipped.
        demo.close()
        close_demo(demo)


def _interrupt(signum, frame):
    # Once is enough: a second SIGTERM (a supervisor's, or `timeout` passing one on) would
    # break off the cleanup the first one started and leave the temp folders behind.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
