"""What an app leaves behind: its temp folders go when it closes, Gradio's uploads and
results expire (delete_cache) and go at shutdown, anonymous sessions' heads go too."""

import tempfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from mmdemo.settings import Settings


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """tempfile's folder for this test alone, so what the app leaves there is its own."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("mmdemo-"))


def test_building_and_closing_leaves_no_temp_folder(temp_root, tmp_path):
    from mmdemo.ui.app import DELETE_CACHE, build_demo, close_demo

    demo = build_demo(Settings(device="cpu", cache_dir=tmp_path / "cache"))
    assert demo.delete_cache == DELETE_CACHE and DELETE_CACHE[0] <= DELETE_CACHE[1]
    assert _left(temp_root)  # the Classify tab's folder, there while the app runs
    close_demo(demo)
    assert _left(temp_root) == []


def test_a_served_app_removes_its_files_and_anonymous_heads_on_close(temp_root, tmp_path, launch_app):
    from mmdemo.models.fusion import create_head, save_head

    cache = tmp_path / "cache"
    demo, url = launch_app(Settings(device="cpu", cache_dir=cache))
    client = Client(url, verbose=False)
    status, *_, download, _ = client.predict("scene_qa", 100, ["concat"], 1, 0.001, "mine", False,
                                             api_name="/train_generated")
    assert "Saved as **mine**" in status and Path(download).is_file()
    registry = demo.mmdemo_registry
    head = create_head("concat", modalities=("image", "text"), embed_dim=128, num_classes=2, hidden=8)
    upload = save_head(tmp_path / "up.safetensors", head, {"labels": ["a", "b"], "modalities": ["image", "text"],
                       "encoder": {"clip": registry.catalog.entry(registry.profile.clip).model_id}})
    client.predict(handle_file(str(upload)), "uploaded", api_name="/upload_head")
    heads = sorted(p.name for p in (cache / "heads").rglob("*.safetensors"))
    assert heads == ["mine.safetensors", "uploaded.safetensors"]
    gradio_cache = temp_root / "gradio"  # Gradio's cache lives in the temp dir too
    assert sorted(p.name for p in gradio_cache.rglob("*.safetensors")) == ["mine.safetensors", "up.safetensors"]
    assert _left(temp_root)
    demo.close()
    assert _left(temp_root) == []
    assert not list(gradio_cache.rglob("*.safetensors"))  # the upload and the result are gone
    # An anonymous session's heads cannot be reached after a restart: they go with the app.
    assert not list((cache / "heads").rglob("*.safetensors"))


@pytest.mark.parametrize("signals", [1, 2])
def test_a_server_stopped_with_sigterm_cleans_up_like_ctrl_c(tmp_path, signals):
    """How docker, Spaces and systemd stop an app: its temp folders must go too, also
    when a second SIGTERM follows while the first one's cleanup runs."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import socket

    temp = tmp_path / "tmp"
    temp.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TMPDIR=str(temp), MMDEMO_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"],
                            cwd=Path(__file__).parents[1], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the app did not start"
                # Poll fast: the signal then lands as soon as the page answers, before Gradio's
                # wait loop, where an uncaught KeyboardInterrupt once skipped the cleanup.
                time.sleep(0.02)
        assert _left(temp), "the app made no temp folder: this test would prove nothing"
        proc.send_signal(signal.SIGTERM)
        for _ in range(signals - 1):
            time.sleep(0.3)  # the first one's cleanup is under way
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _left(temp) == []
