"""--auth: an anonymous visitor gets a login form and nothing of the API; a login (in a
browser or through gradio_client) gets the app."""

import socket

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from mmdemo.settings import Settings

ACCOUNT = ("ann", "s3cret")


@pytest.fixture(scope="module")
def auth_app(test_catalog, tmp_path_factory):
    from mmdemo.ui.app import build_demo, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(profile="test", catalog=test_catalog, device="cpu", auth=ACCOUNT,
                        cache_dir=tmp_path_factory.mktemp("auth-cache"))
    demo = build_demo(settings)
    launch(demo, settings, server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo, demo.local_url
    demo.close()


def _api_words(demo) -> set[str]:
    """What the API description would give away: endpoint and head names."""
    info = demo.get_api_info()
    endpoints = {name.strip("/") for name in info["named_endpoints"]}
    return endpoints | set(demo.mmdemo_registry.names(kind="fusion"))


def test_anonymous_page_is_a_login_form_without_the_api(auth_app):
    demo, url = auth_app
    page = httpx.get(url, headers={"accept": "text/html"})
    assert page.status_code == 401 and '<form method="post" action="/login"' in page.text
    assert "gradio_api_info" not in page.text and "gradio_config" not in page.text
    leaked = [w for w in _api_words(demo) if w in page.text]
    assert not leaked and {"models_status", "classify"} <= _api_words(demo)
    assert httpx.get(f"{url}login").text == page.text  # the same form at /login
    for path in ("gradio_api/info", "config", "gradio_api/info?all_endpoints=true"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and "models_status" not in r.text
    # A browser refused deeper in gets a form that still posts to the app's /login.
    deep = httpx.get(url + "gradio_api/info", headers={"accept": "text/html"})
    assert deep.status_code == 401 and '<form method="post" action="/login"' in deep.text


def test_a_browser_logs_in_and_gets_the_app(auth_app):
    _, url = auth_app
    with httpx.Client(base_url=url, headers={"accept": "text/html"}) as browser:
        wrong = browser.post("login", data={"username": "ann", "password": "nope"})
        assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
        ok = browser.post("login", data={"username": ACCOUNT[0], "password": ACCOUNT[1]})
        assert ok.status_code == 303 and ok.headers["location"] == "./"
        page = browser.get("")
        assert page.status_code == 200 and "gradio_config" in page.text and "models_status" in page.text
        assert browser.get("gradio_api/info").status_code == 200
        browser.get("logout")
        assert browser.get("gradio_api/info").status_code == 401


def test_client_with_the_login_calls_endpoints_and_a_wrong_one_is_refused(auth_app):
    _, url = auth_app
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(AuthenticationError, match="Invalid credentials"):
        Client(url, auth=("ann", "wrong"), verbose=False)
    with pytest.raises(AuthenticationError, match="Invalid credentials"):
        Client(url, auth=("bob", ACCOUNT[1]), verbose=False)
    client = Client(url, auth=ACCOUNT, verbose=False)
    table, _ = client.predict(api_name="/models_status")
    assert "file-clip" in {row[0] for row in table["data"]}
