"""Many users at once: N clients for T seconds over a mix of model-bound endpoints,
against the app started here (``python app.py``, tiny profile, 127.0.0.1).

    python bench/bench_load.py [--clients 16] [--seconds 60] [--compare] [--quick] [--client http|gradio]

Each client uploads its file and calls the endpoint as gradio_client does, over Gradio's
REST API (``--client http``, the default: one keep-alive connection per client and no
threads of its own) or through gradio_client itself (``--client gradio``: on 2 cores its
32 clients take a whole core, so the server is measured on one).

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


class HttpClient:
    """One visitor over Gradio's REST API on one keep-alive connection: upload the file,
    POST /gradio_api/call/<endpoint>, read the event stream to its result. What a browser
    or gradio_client sends, without gradio_client's per-call threads and polling, so that
    on a 2-core machine the load generator leaves the cores to the server it measures.
    Any error closes the connection (the next call opens a new one); a call has
    ``timeout`` seconds in all, heartbeats or not."""

    def __init__(self, url: str, timeout: float):
        import http.client
        from urllib.parse import urlparse

        u = urlparse(url)
        self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        self._timeout = timeout
        self.session = f"{random.getrandbits(64):016x}"  # one session per visitor, as a browser tab has

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        import http.client

        for attempt in (0, 1):
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed the kept-alive connection before answering: nothing
                # was done, so sending again (once, on a new connection) sends it once.
                self._conn.close()
                if attempt:
                    raise
            except BaseException:
                self._conn.close()
                raise

    def _read(self, r) -> bytes:
        try:
            return r.read()
        except BaseException:
            self._conn.close()
            raise

    def _json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        r = self._request(method, path, body, headers)
        data = self._read(r)
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} from {path}: {data[:100]!r}")
        return json.loads(data)

    def upload(self, path: str) -> dict:
        boundary = f"mmdemo{random.getrandbits(64):x}"
        content = Path(path).read_bytes()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{Path(path).name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        (server_path,) = self._json("POST", "/gradio_api/upload", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return {"path": server_path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}

    def predict(self, *args, api_name: str):
        deadline = time.monotonic() + self._timeout
        data = [self.upload(a["path"]) if isinstance(a, dict) and a.get("_upload") else a for a in args]
        body = json.dumps({"data": data, "session_hash": self.session}).encode()
        event = self._json("POST", f"/gradio_api/call{api_name}", body, {"Content-Type": "application/json"})["event_id"]
        r = self._request("GET", f"/gradio_api/call{api_name}/{event}")
        kind = None
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no result within {self._timeout:g} s")
                line = r.readline()
                if not line:
                    raise RuntimeError("the event stream ended without a result")
                line = line.decode().rstrip("\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if kind == "error":
                        raise RuntimeError(f"AppError: {payload}")
                    r.read()  # the stream ends here: drained, the connection is reused
                    return payload
        except BaseException:
            self._conn.close()
            raise

    def download(self, url: str) -> bytes:
        from urllib.parse import urlparse

        r = self._request("GET", urlparse(url).path)
        data = self._read(r)
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status} for a result file")
        return data

    def close(self) -> None:
        self._conn.close()


def _file_arg(path: str, http: bool):
    from gradio_client import handle_file

    return {"_upload": True, "path": path} if http else handle_file(path)


def _args_for(endpoint: str, rng: random.Random, http: bool = False) -> tuple:
    image = _file_arg(str(rng.choice(IMAGES)), http)
    if endpoint == "caption":
        return image, "beam", 3, 20, 1.0, 10, 0.9, 1, 0
    if endpoint == "rank_captions":
        return image, CANDIDATES
    if endpoint == "search_images":
        return rng.choice(QUERIES), 8, None
    if endpoint == "match_audio":
        return _file_arg(str(rng.choice(SOUNDS)), http), AUDIO_LABELS, ""
    # The REST API takes every input (gradio_client fills the defaults, plain HTTP does not):
    # the last one is the prompt ensemble (none).
    return image, "", None, CLASS_LABELS, "a {}", 1, 1, 1, ""


def bad_downloads(result, client=None) -> int:
    """Search thumbnails that come back empty or do not decode whole: the files
    gradio_client saved, or (``client``: an HttpClient) each thumbnail fetched by its URL."""
    import io

    from PIL import Image

    bad = 0
    for item in result[0] or []:
        image = item.get("image") if isinstance(item, dict) else None
        try:
            if client is not None:
                data = client.download(image["url"])
                source = io.BytesIO(data) if data else None
            else:
                path = image.get("path") if isinstance(image, dict) else image
                source = path if path and os.path.getsize(path) else None
            if source is None:
                raise OSError("empty")
            with Image.open(source) as im:
                im.load()
        except Exception:  # noqa: BLE001 - any file the client can't show counts
            bad += 1
    return bad


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:100]}"


def drive(url: str, clients: int, seconds: float, *, max_requests: int, request_timeout: float,
          seed: int = 0, http: bool = True) -> dict:
    """``clients`` threads, each its own connection (``http``: HttpClient; else a
    gradio_client Client), sending the mix until the deadline."""
    from gradio_client import Client

    downloads = Path(tempfile.mkdtemp(prefix="mmdemo-bench-downloads-"))
    lock = threading.Lock()
    latencies: list[float] = []
    per_endpoint: dict[str, list[float]] = {e: [] for e in MIX}
    failures: Counter = Counter()
    counts = {"requests": 0, "bad_downloads": 0, "downloads": 0}
    connected = [HttpClient(url, request_timeout) if http else
                 Client(url, verbose=False, download_files=str(downloads / str(i))) for i in range(clients)]
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
                args = _args_for(endpoint, rng, http)
                if http:
                    result = client.predict(*args, api_name=f"/{endpoint}")
                else:
                    result = client.submit(*args, api_name=f"/{endpoint}").result(timeout=request_timeout)
                bad = bad_downloads(result, client if http else None) if endpoint == "search_images" else 0
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


def run(mode: dict, clients: int, seconds: float, *, max_requests: int, request_timeout: float,
        http: bool = True) -> dict:
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
        result = drive(server.url, clients, seconds, max_requests=max_requests, request_timeout=request_timeout,
                       http=http)
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
    ap.add_argument("--client", choices=("http", "gradio"), default="http",
                    help="http: Gradio's REST API on one keep-alive connection per visitor (light, the "
                         "default); gradio: a gradio_client Client per visitor (about a core of its own "
                         "for 16-32 clients, taken from the server on a 2-core machine)")
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = 4, 10.0
    max_requests = args.max_requests or int(50 * args.seconds)
    load_before = os.getloadavg()
    http = args.client == "http"
    report = {"clients": args.clients, "seconds": args.seconds, "client": args.client, "mix": list(MIX),
              "cpus": os.cpu_count(),
              "loadavg_before": [round(x, 2) for x in load_before]}
    report["batched"] = run(BATCHED, args.clients, args.seconds, max_requests=max_requests,
                            request_timeout=args.request_timeout, http=http)
    if args.compare:
        report["unbatched"] = run(UNBATCHED, args.clients, args.seconds, max_requests=max_requests,
                                  request_timeout=args.request_timeout, http=http)
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
