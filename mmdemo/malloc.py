"""Fewer malloc arenas for a server that runs models in many threads.

glibc gives each thread that allocates concurrently an arena of its own (up to 8 per
core) and rarely hands their freed pages back. A server running model calls of varying
batch sizes in 8-16 worker threads then grows for a long time: measured with
bench/bench_load.py (16 clients, 60 s, tiny profile, 2 cores), RSS went 1120 -> 1358 MB
and was still rising; with two arenas it levelled at 1237 MB, at the same throughput
(9.5 vs 10.1 req/s, within this machine's noise).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number
SERVER_ARENAS = 2


def limit_arenas(n: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``n`` for this process (before its worker threads
    start); False where there is no glibc (macOS, Windows, musl), which changes nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):
        return False
