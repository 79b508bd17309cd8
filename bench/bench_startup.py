"""Time from `python app.py` to the first HTTP 200, next to a bare Gradio hello-world
started the same way (same interpreter, same machine, alternating runs).

    python bench/bench_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELLO = """
import gradio as gr, sys
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_200(cmd: list[str], port: int, timeout: float = 120.0) -> float:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no HTTP 200 within {timeout}s: {cmd}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    hello = Path(tempfile.mkdtemp()) / "hello.py"
    hello.write_text(HELLO)
    app_s, hello_s = [], []
    for _ in range(args.runs):
        port = free_port()
        app_s.append(time_to_200([sys.executable, "app.py", "--port", str(port)], port))
        port = free_port()
        hello_s.append(time_to_200([sys.executable, str(hello), str(port)], port))
    out = {
        "runs": args.runs,
        "app_seconds_median": round(statistics.median(app_s), 2),
        "hello_world_seconds_median": round(statistics.median(hello_s), 2),
        "ratio_app_over_hello": round(statistics.median(app_s) / statistics.median(hello_s), 2),
        "app_seconds": [round(x, 2) for x in app_s],
        "hello_world_seconds": [round(x, 2) for x in hello_s],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
