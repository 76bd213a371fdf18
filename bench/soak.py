"""Soak: steady simulated traffic for minutes with evictions happening.

Resident memory must stay flat (the slope of its second half is reported)
and no event may be lost: every event the simulator had accepted is counted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bench.run import counted, server
from exporter.simulate import Simulator, Traffic

# Small bounds so that both kinds of eviction happen within a short soak:
# 60 s is the shortest TTL the settings allow, and deliveries take about as
# long (so many registrations expire while pending); 10k entries fill in
# about half a minute at the rate below.
SOAK_SETTINGS = {"pending_ttl_seconds": "60", "pending_max_entries": "10000"}
RATE = 300.0
DELIVERY_DELAY = 45.0
SAMPLE_EVERY = 2.0


def soak(seconds: float) -> dict[str, Any]:
    with server("exporter", "memory://", **SOAK_SETTINGS) as srv:
        traffic = Traffic(
            url=srv.url + "/events", rate=RATE, duration=seconds, delivery_delay=DELIVERY_DELAY,
            batch_size=100, tick=0.1,
        )  # fmt: skip
        simulator = Simulator(traffic)
        outcome: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: outcome.update(report=asyncio.run(simulator.run()))
        )
        started = time.monotonic()
        thread.start()
        samples: list[tuple[float, int]] = []
        while thread.is_alive():
            samples.append((time.monotonic() - started, srv.rss_bytes()))
            thread.join(SAMPLE_EVERY)
        report = outcome["report"]
        got = counted(srv.url)
        evicted = _evictions(srv.url)
    half = [s for s in samples if s[0] >= seconds / 2] or samples
    return {
        "seconds": seconds,
        "events_sent": report.events,
        "counted": got,
        "lost": report.events - got,
        "failed_requests": report.failed_requests,
        "evicted": evicted,
        "rss_start_mb": samples[0][1] / 2**20,
        "rss_end_mb": samples[-1][1] / 2**20,
        "rss_slope_mb_per_min": _slope(half) * 60 / 2**20,
        "samples": [(round(t, 1), r) for t, r in samples],
    }


def _evictions(url: str) -> dict[str, float]:
    import httpx  # noqa: PLC0415

    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("cloudmailin_pending_evicted_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of bytes over seconds."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    num = sum((t - mean_t) * (r - mean_r) for t, r in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den if den else 0.0
