"""Load runs: the exporter and the parse-only ceiling under wrk, pinned to separate cores."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LUA = ROOT / "bench" / "wrk" / "events.lua"
# The server gets core 0, the load generator (and Redis) core 1: on a
# two-core machine they would otherwise steal each other's time.
SERVER_CORE = "0"
LOAD_CORE = "1"
# Concurrent connections: enough to keep one Python core saturated.
CONNECTIONS = 16


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"bench: {tool} is not installed (scripts/test.sh installs it)")
    return path


def pinned(core: str, argv: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    cores = os.cpu_count() or 1
    return [taskset, "-c", core, *argv] if taskset and cores > 1 else argv


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.05)
    raise TimeoutError(url)


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@contextlib.contextmanager
def server(name: str, state_url: str | None = None, **settings: str) -> Iterator[Server]:
    """`ceiling` (parse-only Starlette) or the exporter with `state_url`, under uvicorn."""
    port = free_port()
    if name == "ceiling":
        argv = [
            str(BIN / "python"), "-m", "uvicorn", "bench.ceiling:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        probe = f"http://127.0.0.1:{port}/nothing"
    else:
        argv = [
            str(BIN / "cloudmailin-exporter"), "--host", "127.0.0.1", "--port", str(port),
            "--state-url", state_url or "memory://", "--log-level", "error",
        ]  # fmt: skip
        for key, value in settings.items():
            argv += ["--" + key.replace("_", "-"), value]
        probe = f"http://127.0.0.1:{port}/healthz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDMAILIN_EXPORTER_")}
    proc = subprocess.Popen(pinned(SERVER_CORE, argv), cwd=ROOT, env=env)
    try:
        wait_for(probe, proc)
        yield Server(name, f"http://127.0.0.1:{port}", proc)
    finally:
        stop_process(proc)


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    batch: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def eps(self) -> float:
        return self.rps * self.batch


def wrk(url: str, batch: int, seconds: float, rate: float = 0) -> Load:
    """Drive POST /events; `rate` > 0 offers that many requests/s instead of the most."""
    lag = CONNECTIONS * 25
    argv = [
        require("wrk"), "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
        "-s", str(LUA), url + "/events", "--", str(batch), str(lag), str(rate), str(CONNECTIONS),
    ]  # fmt: skip
    out = subprocess.run(
        pinned(LOAD_CORE, argv), capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    match = re.search(r"^RESULT (\{.*\})$", out, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(match.group(1))
    return Load(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        errors=r["errors"] + r["non2xx"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        batch=batch,
    )


def counted(url: str) -> float:
    """Events the exporter accounted for: accepted, rejected and duplicates."""
    text = httpx.get(url + "/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(
            ("cloudmailin_events_total", "cloudmailin_rejected_events_total",
             "cloudmailin_duplicate_events_total")
        ):  # fmt: skip
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape_time(url: str, times: int = 20) -> tuple[float, int, int]:
    """Median seconds of one /metrics scrape, its size in bytes and its series."""
    durations = []
    body = b""
    with httpx.Client(timeout=30) as client:
        for _ in range(times):
            started = time.perf_counter()
            body = client.get(url + "/metrics").content
            durations.append(time.perf_counter() - started)
    durations.sort()
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return durations[len(durations) // 2], len(body), series
