"""Many users at once: N gradio_client clients for T seconds over a mix of model-bound
endpoints, against the app started here (``python app.py``, tiny profile, 127.0.0.1).

    python bench/bench_load.py [--clients 16] [--seconds 60] [--compare] [--quick]

Reports requests, failures by cause, bad downloads (search thumbnails that come back
empty or cut short), p50/p95 latency, req/s and the server's RSS over the run, as JSON.
``--compare`` runs batched (the CPU defaults: --concurrency 8, batching on) and then
unbatched (--concurrency 1 --batch-max 1) in the same run and adds their ratios.
Bounded: each run stops at its deadline or after --max-requests, and every request
has a --request-timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmdemo.settings import DEFAULT_BATCH_MAX, DEFAULT_CPU_CONCURRENCY  # noqa: E402

IMAGES = sorted((REPO / "assets" / "examples" / "images").glob("*.png"))
SOUNDS = sorted((REPO / "assets" / "examples" / "sounds").glob("*.wav"))
QUERIES = ["a red diamond", "a large blue heart", "a small green ring", "a white star on stripes", "two shapes"]
CANDIDATES = "a red diamond\na large blue heart\na small green ring\na white star\na black triangle"
AUDIO_LABELS = "a rising chirp\na falling chirp\na burst of white noise\na low sine tone"
CLASS_LABELS = "red circle\nblue star\ngreen square\nyellow triangle"
# The endpoint mix, equally likely: what a visitor trying each tab sends.
MIX = ("caption", "rank_captions", "search_images", "match_audio", "classify_zero_shot")
BATCHED = {"concurrency": DEFAULT_CPU_CONCURRENCY, "batch_max": DEFAULT_BATCH_MAX}
UNBATCHED = {"concurrency": 1, "batch_max": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Server:
    """``python app.py`` on a free port with its own cache, until stop()."""

    def __init__(self, concurrency: int, batch_max: int, timeout: float = 180.0):
        self.cache = Path(tempfile.mkdtemp(prefix="mmdemo-bench-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "app.py", "--profile", "tiny", "--device", "cpu", "--host", "127.0.0.1",
               "--port", str(self.port), "--cache-dir", str(self.cache), "--queue-size", "256",
               "--concurrency", str(concurrency), "--batch-max", str(batch_max)]
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
        self.log = open(self.cache / "server.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"app.py served nothing within {timeout}s")

    def tail(self) -> str:
        self.log.flush()
        return (self.cache / "server.log").read_text()[-2000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.cache, ignore_errors=True)


def _args_for(endpoint: str, rng: random.Random) -> tuple:
    from gradio_client import handle_file

    image = handle_file(str(rng.choice(IMAGES)))
    if endpoint == "caption":
        return image, "beam", 3, 20, 1.0, 10, 0.9, 1, 0
    if endpoint == "rank_captions":
        return image, CANDIDATES
    if endpoint == "search_images":
        return rng.choice(QUERIES), 8, None
    if endpoint == "match_audio":
        return handle_file(str(rng.choice(SOUNDS))), AUDIO_LABELS, ""
    return image, "", None, CLASS_LABELS, "a {}", 1, 1, 1


def bad_downloads(result) -> int:
    """Search thumbnails the client saved that are empty or do not decode whole."""
    from PIL import Image

    bad = 0
    for item in result[0] or []:
        path = item.get("image") if isinstance(item, dict) else None
        path = path.get("path") if isinstance(path, dict) else path
        try:
            if not path or os.path.getsize(path) == 0:
                raise OSError("empty")
            with Image.open(path) as im:
                im.load()
        except Exception:  # noqa: BLE001 - any file the client can't show counts
            bad += 1
    return bad


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:100]}"


def drive(url: str, clients: int, seconds: float, *, max_requests: int, request_timeout: float,
          seed: int = 0) -> dict:
    """``clients`` threads, each its own gradio_client, sending the mix until the deadline."""
    from gradio_client import Client

    downloads = Path(tempfile.mkdtemp(prefix="mmdemo-bench-downloads-"))
    lock = threading.Lock()
    latencies: list[float] = []
    per_endpoint: dict[str, list[float]] = {e: [] for e in MIX}
    failures: Counter = Counter()
    counts = {"requests": 0, "bad_downloads": 0, "downloads": 0}
    connected = [Client(url, verbose=False, download_files=str(downloads / str(i))) for i in range(clients)]
    start_gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client_loop(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        client = connected[i]
        start_gate.wait()
        while time.monotonic() < deadline[0]:
            with lock:
                if counts["requests"] >= max_requests:
                    return
                counts["requests"] += 1
            endpoint = rng.choice(MIX)
            started = time.perf_counter()
            try:
                result = client.submit(*_args_for(endpoint, rng), api_name=f"/{endpoint}").result(
                    timeout=request_timeout)
                bad = bad_downloads(result) if endpoint == "search_images" else 0
                n = len(result[0] or []) if endpoint == "search_images" else 0
            except Exception as exc:  # noqa: BLE001 - failures are what this counts
                with lock:
                    failures[f"/{endpoint} {_cause(exc)}"] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                per_endpoint[endpoint].append(elapsed)
                counts["downloads"] += n
                counts["bad_downloads"] += bad
                if bad:
                    failures[f"/{endpoint} truncated or empty download"] += 1

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started = time.monotonic()
    deadline[0] = started + seconds
    start_gate.wait()
    for t in threads:
        t.join(seconds + request_timeout + 30)
    wall = time.monotonic() - started
    for c in connected:
        c.close()
    shutil.rmtree(downloads, ignore_errors=True)
    lat = sorted(latencies)
    return {
        "requests": counts["requests"], "ok": len(lat), "failed": sum(failures.values()),
        "failures": dict(failures), "downloads": counts["downloads"], "bad_downloads": counts["bad_downloads"],
        "per_endpoint": {e: {"ok": len(v), "p50_s": round(statistics.median(v), 3) if v else None}
                         for e, v in per_endpoint.items()},
        "seconds": round(wall, 1),
        "req_per_s": round(len(lat) / wall, 2),
        "p50_s": round(statistics.median(lat), 3) if lat else None,
        "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
    }


def warm_up(url: str) -> None:
    """One request per endpoint, not counted: models load, the default gallery is encoded."""
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="mmdemo-bench-warm-") as downloads:
        client = Client(url, verbose=False, download_files=downloads)
        rng = random.Random(0)
        for endpoint in MIX:
            client.predict(*_args_for(endpoint, rng), api_name=f"/{endpoint}")
        client.close()


def run(mode: dict, clients: int, seconds: float, *, max_requests: int, request_timeout: float) -> dict:
    server = Server(**mode)
    samples: list[tuple[float, float | None]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append((round(time.monotonic() - t0, 1), rss_mb(server.proc.pid)))
            stop.wait(1.0)

    try:
        boot_rss = rss_mb(server.proc.pid)
        warm_up(server.url)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = drive(server.url, clients, seconds, max_requests=max_requests, request_timeout=request_timeout)
        stop.set()
        sampler.join(5)
    finally:
        stop.set()
        server.stop()
    rss = [r for _, r in samples if r is not None]
    step = max(1, len(samples) // 12)
    return {**mode, **result, "rss_mb": {"boot": boot_rss, "after_warm_up": rss[0] if rss else None,
                                          "max": max(rss, default=None), "last": rss[-1] if rss else None,
                                          "at_s": [t for t, _ in samples[::step]],
                                          "samples": [r for _, r in samples[::step]]}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--compare", action="store_true", help="batched vs unbatched in the same run")
    ap.add_argument("--quick", action="store_true", help="4 clients x 10 s (a smoke run)")
    ap.add_argument("--max-requests", type=int, default=0, help="stop a run after this many (default: 50/s)")
    ap.add_argument("--request-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = 4, 10.0
    max_requests = args.max_requests or int(50 * args.seconds)
    load_before = os.getloadavg()
    report = {"clients": args.clients, "seconds": args.seconds, "mix": list(MIX), "cpus": os.cpu_count(),
              "loadavg_before": [round(x, 2) for x in load_before]}
    report["batched"] = run(BATCHED, args.clients, args.seconds, max_requests=max_requests,
                            request_timeout=args.request_timeout)
    if args.compare:
        report["unbatched"] = run(UNBATCHED, args.clients, args.seconds, max_requests=max_requests,
                                  request_timeout=args.request_timeout)
        b, u = report["batched"], report["unbatched"]

        def ratio(x, y):
            return round(x / y, 2) if x and y else None

        report["ratios"] = {"throughput_batched_over_unbatched": ratio(b["req_per_s"], u["req_per_s"]),
                            "p50_batched_over_unbatched": ratio(b["p50_s"], u["p50_s"]),
                            "p95_batched_over_unbatched": ratio(b["p95_s"], u["p95_s"])}
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    # one line per list of numbers: the RSS series reads across
    print(re.sub(r"\[[-0-9.,\s]*\]", lambda m: " ".join(m.group(0).split()), json.dumps(report, indent=2)))
    return report


if __name__ == "__main__":
    main()
