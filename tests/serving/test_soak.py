"""Soak: a few thousand requests through one replica; its resident memory must stay flat."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REQUESTS = 3000


def body(i: int) -> dict:
    # mostly the cheap formats, with the matplotlib and zip paths mixed in
    fmt = "png" if i % 100 == 0 else "zip" if i % 25 == 0 else "json" if i % 2 else "midi"
    return {"seed": i, "format": fmt, "n_samples": 1 + i % 4, "n_bars": 4 * (1 + i % 2)}


def test_resident_memory_stays_flat_over_thousands_of_requests(served):
    def run(indices):
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda i: served.generate(**body(i))[0], indices))

    pid = served.json("/healthz")["pid"]
    assert set(run(range(400))) == {200}  # warm-up: caches, thread pools, allocator arenas
    proc = psutil.Process(pid)
    rss_start = proc.memory_info().rss
    statuses = run(range(400, 400 + REQUESTS))
    rss_end = proc.memory_info().rss
    assert served.json("/healthz")["pid"] == pid  # the same replica served them all
    assert statuses.count(200) == REQUESTS, {s: statuses.count(s) for s in set(statuses)}
    growth = rss_end / rss_start - 1
    print(f"replica RSS {rss_start / 2**20:.1f} MiB -> {rss_end / 2**20:.1f} MiB ({growth:+.1%}) over {REQUESTS}")
    assert growth < 0.10
