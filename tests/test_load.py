"""Many clients at once through the bench's own load driver (bench/bench_load.py), small:
8 clients (gradio_client, then the bench's plain REST client) for 20 s over the endpoint
mix against ``python app.py`` with the default (batched) settings. Correctness, not speed: no request fails and no search
thumbnail comes back empty or cut short. Slow (about 40 s each)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_load.py"


@pytest.fixture(scope="module")
def bench_load():
    spec = importlib.util.spec_from_file_location("bench_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("client", ["gradio", "http"])
def test_eight_clients_for_twenty_seconds_get_every_answer_whole(bench_load, client):
    result = bench_load.run(bench_load.BATCHED, clients=8, seconds=20, max_requests=2000, request_timeout=120,
                            http=client == "http")
    assert result["failed"] == 0, result["failures"]
    assert result["bad_downloads"] == 0
    assert result["ok"] == result["requests"] and all(e["ok"] for e in result["per_endpoint"].values()), result
    assert result["downloads"] >= 8 * result["per_endpoint"]["search_images"]["ok"]  # 8 thumbnails each
