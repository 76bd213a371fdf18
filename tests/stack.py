"""Real Prometheus, Alertmanager and a webhook receiver, on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from tests.servers import free_port, stop_process

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

    def alert_names(self) -> set[str]:
        return {
            alert["labels"]["alertname"]
            for note in list(self.notifications)
            for alert in note.get("alerts", [])
        }

    def wait_for(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self.alert_names():
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
) -> Iterator[Prometheus]:
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "cloudmailin-exporter",
                "static_configs": [{"targets": [target], "labels": {"namespace": "e2e"}}],
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
        f"--storage.tsdb.path={tmp / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with process(args, url + "/-/ready", tmp / "prometheus.log"):
        yield Prometheus(url)


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A real redis-server on a loopback port, which a test may stop and start again."""

    def __init__(self, tmp: Path, prefix: Sequence[str] = (), args: Sequence[str] = ()) -> None:
        self.tmp = tmp
        # Run before redis-server, e.g. the benchmark's `taskset -c 1`.
        self.prefix = list(prefix)
        self.args = list(args)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            *self.prefix, REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.tmp), *self.args,
        ]  # fmt: skip
        with (self.tmp / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
            self.proc = None

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to tell anyone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class Sentinel:
    """A real Redis Sentinel (`redis-server <conf> --sentinel`) watching one master,
    tuned to notice a dead master within a second."""

    def __init__(self, tmp: Path, master_port: int, name: str = "mymaster") -> None:
        self.tmp = tmp
        self.name = name
        self.port = free_port()
        self.config = tmp / "sentinel.conf"
        # Sentinel rewrites its configuration file, so it must be writable.
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {name} 400\n"
            f"sentinel failover-timeout {name} 3000\n"
        )
        with (tmp / "sentinel.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, str(self.config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.client.ping():
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("redis sentinel did not start")

    def master_port(self) -> int:
        address = self.client.sentinel_get_master_addr_by_name(self.name)
        assert isinstance(address, tuple)
        return int(address[1])

    def replica_ports(self) -> list[int]:
        replicas = self.client.sentinel_slaves(self.name)
        return [int(r["port"]) for r in replicas if not r.get("is_disconnected")]

    def stop(self) -> None:
        stop_process(self.proc, 10)


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()
