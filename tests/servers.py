"""Real servers for tests: the exporter under uvicorn, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from bench.processes import free_port, stop_process
from exporter.app import create_app
from exporter.metrics import Clock, ExporterMetrics, wall_clock
from exporter.settings import Settings
from exporter.stores import open_store
from exporter.stores.base import StateStore
from exporter.webhook import ASGIApp, WebhookRoute

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Running:
    url: str
    app: WebhookRoute
    registry: CollectorRegistry
    store: StateStore
    client: httpx.Client

    @property
    def metrics(self) -> ExporterMetrics:
        metrics: ExporterMetrics = self.app.state.metrics
        return metrics

    def value(self, name: str, **labels: str) -> float:
        """A sample's value from the app's own registry (0 when absent)."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def post(self, events: list[Any], **kwargs: Any) -> httpx.Response:
        return self.client.post("/events", json={"events": events}, **kwargs)


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Run `app` under a real uvicorn on a free loopback port; yield its URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def running_exporter(clock: Clock | None = None, **overrides: Any) -> Iterator[Running]:
    """The app under a real uvicorn; `clock` defaults to the wall clock."""
    settings = Settings(**overrides)
    registry = CollectorRegistry()
    store = open_store(settings)
    app = create_app(settings, registry, store, clock or wall_clock)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Running(url, app, registry, store, client)


@dataclass
class Process:
    proc: subprocess.Popen[str]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        return stop_process(self.proc)


@contextlib.contextmanager
def exporter_process(
    tmp: Path,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    listen_port: int | None = None,
) -> Iterator[Process]:
    """The installed `cloudmailin-exporter` command as a separate process.

    It is told a free port through the environment; `listen_port` is where it
    really listens when `args` say otherwise.
    """
    port = free_port()
    log_path = tmp / f"exporter-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDMAILIN_EXPORTER_")}
    full_env.update(env or {})
    full_env["CLOUDMAILIN_EXPORTER_HOST"] = "127.0.0.1"
    full_env["CLOUDMAILIN_EXPORTER_PORT"] = str(port)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "cloudmailin-exporter"), *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    port = listen_port or port
    process = Process(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_port(port, proc=proc)
        yield process
    finally:
        process.stop()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDMAILIN_EXPORTER_")}
    return subprocess.run(
        [str(BIN / "cloudmailin-exporter"), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def event(kind: str, message_id: str) -> dict[str, str]:
    return {"kind": kind, "recipient": f"{message_id}@durable.example", "message_id": message_id}


def eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether `check()` holds within `timeout` seconds, asked every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def events_of(exporter: Running, kind: str, domain: str) -> float:
    return exporter.value("cloudmailin_events_total", kind=kind, domain=domain)


def events_snapshot(exporter: Running) -> dict[tuple[object, ...], float]:
    """Every cloudmailin_* sample except the request accounting of the webhook itself."""
    out: dict[tuple[object, ...], float] = {}
    for family in exporter.registry.collect():
        if not family.name.startswith("cloudmailin_") or "webhook_request" in family.name:
            continue
        if family.name == "cloudmailin_last_event_timestamp_seconds":
            continue
        for sample in family.samples:
            out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out
