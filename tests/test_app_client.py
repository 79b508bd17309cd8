"""The running app, driven through the real client (gradio_client), as API users do."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from mmdemo.settings import Settings


@pytest.fixture(scope="module")
def client(test_app):
    return Client(test_app[1], verbose=False)


def states(result):
    table, _ = result
    return {row[0]: row[2] for row in table["data"]}


def test_every_listener_has_a_named_endpoint(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/models_status", "/load_model", "/unload_model", "/load_profile"} <= names
    assert not any(n.startswith("/lambda") or n.startswith("/_") for n in names)


def test_load_then_unload_changes_status(client):
    assert states(client.predict(api_name="/models_status"))["file-clip"] == "not loaded"
    result = client.predict("file-clip", api_name="/load_model")
    table, info = result
    row = next(r for r in table["data"] if r[0] == "file-clip")
    assert row[2] == "loaded" and row[3] == "cpu" and row[5]  # device and parameter count shown
    assert "Profile:** `test`" in info and "cpu" in info
    assert states(client.predict("file-clip", api_name="/unload_model"))["file-clip"] == "not loaded"


def test_failed_load_is_a_clear_error_and_the_server_keeps_serving(client):
    with pytest.raises(AppError, match="Weights file for 'missing-clip' not found"):
        client.predict("missing-clip", api_name="/load_model")
    assert states(client.predict(api_name="/models_status"))["missing-clip"] == "failed"
    assert states(client.predict("rand-clip", api_name="/load_model"))["rand-clip"] == "loaded"


def test_a_user_error_is_one_server_log_line_with_its_code_not_a_traceback(client, capfd, caplog):
    """The server is in this process: what it prints for a user's mistake is one line."""
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="mmdemo"):
        with pytest.raises(AppError, match="Weights file for 'missing-clip' not found"):
            client.predict("missing-clip", api_name="/load_model")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mmdemo")]
    assert len(lines) == 1 and lines[0].startswith("user error [weights_not_found] in load: Weights file for")
    assert all(r.exc_info is None for r in caplog.records)


def test_unknown_model_name_lists_the_available_ones(client):
    with pytest.raises(AppError, match="nope is not in the list of choices.*file-clip"):
        client.predict("nope", api_name="/load_model")


def test_load_profile_loads_its_models(client):
    got = states(client.predict(api_name="/load_profile"))
    assert got["file-clip"] == "loaded" and got["file-coca"] == "loaded"


def test_auth_is_enforced(test_catalog, launch_app):
    settings = Settings(profile="test", catalog=test_catalog, device="cpu", auth=("ann", "s3cret"))
    _, url = launch_app(settings)
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False).predict(api_name="/models_status")
    with pytest.raises(ValueError, match="Could not login"):  # gradio answers 400, not 401
        Client(url, auth=("ann", "wrong"), verbose=False)
    ok = Client(url, auth=("ann", "s3cret"), verbose=False)
    assert "file-clip" in states(ok.predict(api_name="/models_status"))


def test_upload_limit_and_queue_are_set(test_app):
    demo = test_app[0]
    assert demo.max_file_size == 1024 * 1024
    assert demo._queue.max_size == 64
