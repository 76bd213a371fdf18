"""Real Prometheus, Alertmanager and a webhook receiver, on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.processes import free_port, stop_process
from exporter.monitoring.config import MonitoringConfig, camel
from exporter.simulate import Simulator, Traffic
from tests.chart import by_kind, install
from tests.servers import Running

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def process(args: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, proc, log)
        yield proc
    finally:
        stop_process(proc, 10)


@dataclass
class Receiver:
    """Collects the alert notifications Alertmanager posts to it."""

    url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def alert_names(self, since: int = 0) -> set[str]:
        """Names of the alerts in the notifications from the `since`-th on."""
        return {
            alert["labels"]["alertname"]
            for note in list(self.notifications)[since:]
            for alert in note.get("alerts", [])
        }

    def wait_for(self, name: str, timeout: float, since: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self.alert_names(since):
                return True
            time.sleep(0.2)
        return False


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    port = free_port()
    got = Receiver(f"http://127.0.0.1:{port}/")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            got.notifications.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[str]:
    port = free_port()
    config = {
        "route": {
            "receiver": "test",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url}]}],
    }
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    args = [
        ALERTMANAGER,
        f"--config.file={path}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with process(args, url + "/-/ready", tmp / "alertmanager.log"):
        yield url


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, seconds: float, step: float = 2) -> list[dict[str, Any]]:
        end = time.time()
        params: dict[str, str | float] = {
            "query": expr,
            "start": end - seconds,
            "end": end,
            "step": step,
        }
        response = httpx.get(self.url + "/api/v1/query_range", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def exemplars(self, expr: str, seconds: float) -> list[dict[str, Any]]:
        end = time.time()
        params: dict[str, str | float] = {"query": expr, "start": end - seconds, "end": end}
        response = httpx.get(self.url + "/api/v1/query_exemplars", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]
        return result

    def wait_for_data(self, expr: str, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        return []


@contextlib.contextmanager
def prometheus(
    tmp: Path,
    target: str,
    rules: Path | None = None,
    alertmanager_url: str | None = None,
    job: str = "cloudmailin-exporter",
    namespace: str = "e2e",
) -> Iterator[Prometheus]:
    """A Prometheus scraping `target` every second as `job`, labelled `namespace`
    (what Prometheus Operator would give a Service's pods), evaluating `rules`."""
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [target], "labels": {"namespace": namespace}}],
            }
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    if alertmanager_url is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.split("//")[1]]}]}]
        }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    args = [
        PROMETHEUS,
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp / f'prom-data-{port}'}",
        # Exemplars on the time-to-delivery panels, as the README asks of users.
        "--enable-feature=exemplar-storage",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with process(args, url + "/-/ready", tmp / f"prometheus-{port}.log"):
        yield Prometheus(url)


# The shipped rules with windows shortened from minutes to seconds, so that a
# spike shows within a test's patience; the baseline is a minute, so the
# warm-up guard holds baseline alerts for the first minute of traffic.
FAST = MonitoringConfig(
    rate_window="10s",
    ratio_window="30s",
    min_outcomes=20,
    bounce_ratio_for="3s",
    spike_window="10s",
    baseline_window="1m",
    # Normal traffic (NORMAL below: 60 messages/s, 0.5% hard bounces) puts about 3
    # hard bounces and 1 suppression into a 10 s window; at 5 the guard let Poisson
    # noise (7 bounces, 1.2% against a 0.4% baseline) page during the warm-up test.
    # 25 is out of noise's reach while a spike (50%) brings about 300.
    bounce_spike_min_events=25,
    bounce_spike_for="3s",
    spam_spike_min_events=25,
    spam_spike_for="3s",
    retries_exhausted_window="30s",
    slow_delivery_window="30s",
    slow_delivery_for="3s",
    engagement_window="10s",
    engagement_min_expected_opens=5,
    engagement_for="3s",
    rejecting_window="30s",
    rejecting_for="3s",
    overflow_window="30s",
    overflow_for="3s",
    state_store_down_for="3s",
    evicted_window="30s",
    evicted_for="3s",
    unmatched_window="30s",
    unmatched_for="3s",
    down_for="30s",
    absent_for="1m",
)
# What the chart's ServiceMonitor and Service make of release cm in namespace mail.
RELEASE = {"job": "cm-cloudmailin-exporter", "namespace": "mail"}


def chart_rules(tmp: Path, config: MonitoringConfig) -> Path:
    """The chart's PrometheusRule groups for release cm in namespace mail, rendered by
    the Helm engine with every knob of `config` but the selector set from the values."""
    knobs = config.model_dump(exclude={"selector"})
    values = {
        "prometheusRule": {"enabled": True, "config": {camel(k): v for k, v in knobs.items()}}
    }
    (rule,) = by_kind(install(values, RELEASE["namespace"]))["PrometheusRule"]
    path = tmp / f"chart-rules-{len(list(tmp.glob('chart-rules-*')))}.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


NORMAL = {"rate": 60.0, "bounce_ratio": 0.005, "spam_ratio": 0.002, "delivery_delay": 0.5}


class Drive:
    """Simulated traffic in a background thread, until its duration or stop()."""

    def __init__(self, exporter: Running, seconds: float, **traffic: float) -> None:
        settings = Traffic(url=exporter.url + "/events", duration=seconds, **{**NORMAL, **traffic})
        self.simulator = Simulator(settings)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.simulator.run()), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.simulator.stopped = True
        self.thread.join(15)
