"""Real processes on free loopback ports, shared by the benchmark and the tests:
a free port, stopping a process within a deadline, a real redis-server and a
real Redis Sentinel."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def stop_process(proc: subprocess.Popen[Any], grace: float = 20) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        self.client.close()
        stop_process(self.proc, 10)


@contextlib.contextmanager
def redis_server(tmp: Path, prefix: Sequence[str] = ()) -> Iterator[RedisServer]:
    server = RedisServer(tmp, prefix)
    server.start()
    try:
        yield server
    finally:
        server.stop()
