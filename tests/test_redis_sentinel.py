"""Redis Sentinel: the URL, and a real failover (master, replica, sentinel) under an
exporter that keeps counting and follows the new master without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from bench.processes import RedisServer, Sentinel
from exporter.settings import Settings
from exporter.stores.redis import SentinelURL
from tests.servers import Running, eventually, running_exporter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a master, a replica and a sentinel


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://h1:26379,h2:26380/mymaster/2",
            SentinelURL((("h1", 26379), ("h2", 26380)), "mymaster", 2, None),
        ),
        (
            "redis+sentinel://:s%40cret@sentinel.redis.svc:26379/mymaster/0",
            SentinelURL((("sentinel.redis.svc", 26379),), "mymaster", 0, "s@cret"),
        ),
        # The database defaults to 0, as in redis:// URLs.
        ("redis+sentinel://h:1/m", SentinelURL((("h", 1),), "m", 0, None)),
        ("redis+sentinel://[::1]:26379/m/1", SentinelURL((("::1", 26379),), "m", 1, None)),
    ],
)
def test_sentinel_urls_are_read(url: str, expected: SentinelURL) -> None:
    assert SentinelURL.parse(url) == expected
    assert Settings(state_url=url).state_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://h1:26379/", "names no master"),
        ("redis+sentinel://h1:26379", "names no master"),
        ("redis+sentinel://h1/mymaster/0", "not host:port"),
        ("redis+sentinel://h1:26379,/mymaster/0", "not host:port"),
        ("redis+sentinel://h1:port/mymaster/0", "not host:port"),
        ("redis+sentinel://h1:70000/mymaster/0", "not host:port"),
        ("redis+sentinel://:pw@/mymaster/0", "not host:port"),
        ("redis+sentinel://h1:26379/mymaster/zero", "database is not a number"),
        ("redis+sentinel://h1:26379/mymaster/0/extra", "database is not a number"),
    ],
)
def test_bad_sentinel_urls_are_refused_clearly(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(state_url=url)
    message = refused.value.errors()[0]["msg"]
    assert reason in message


def test_a_refused_sentinel_url_never_shows_its_password() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(state_url="redis+sentinel://:hunter2-secret@h1:bad/m/0")
    assert "hunter2" not in refused.value.errors()[0]["msg"]


def summed(exporter: Running, name: str, **labels: str) -> float:
    """A sample summed over every label not given (the domain, say)."""
    return sum(
        sample.value
        for family in exporter.registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def events_total(exporter: Running, kind: str) -> float:
    return summed(exporter, "cloudmailin_events_total", kind=kind)


def timed_deliveries(exporter: Running) -> float:
    return summed(exporter, "cloudmailin_time_to_delivery_seconds_count")


def test_failover_is_followed_without_a_restart(tmp_path: Path) -> None:
    for name in ("master", "replica", "sentinel"):
        (tmp_path / name).mkdir()
    master = RedisServer(tmp_path / "master")
    master.start()
    replica = RedisServer(tmp_path / "replica", args=["--replicaof", "127.0.0.1", str(master.port)])
    sentinel: Sentinel | None = None
    try:
        replica.start()
        replica_client = redis.Redis(port=replica.port, decode_responses=True)
        assert eventually(
            lambda: replica_client.info("replication")["master_link_status"] == "up", 15
        ), "the replica does not follow the master"
        sentinel = Sentinel(tmp_path / "sentinel", master.port)
        watcher = sentinel
        assert eventually(lambda: watcher.replica_ports() == [replica.port], 15), (
            "the sentinel does not see the replica"
        )
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{sentinel.name}/0"
        with running_exporter(state_url=url, store_timeout_seconds=0.3) as exporter:
            failover(exporter, master, replica, watcher)
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
        master.stop()


def failover(
    exporter: Running, master: RedisServer, replica: RedisServer, sentinel: Sentinel
) -> None:
    def post(kind: str, ids: range) -> None:
        events = [
            {"kind": kind, "recipient": f"r{i}@f.example", "message_id": f"m{i}"} for i in ids
        ]
        response = exporter.post(events)
        assert response.status_code == 200
        assert response.json()["accepted"] == len(ids)

    post("registration", range(20))
    assert exporter.value("cloudmailin_state_store_up") == 1
    # Only writes a replica has acknowledged survive the master's death.
    assert redis.Redis(port=master.port).wait(1, 5000) == 1
    master.kill()

    # Counting goes on while there is no master: every event is counted, and
    # the store is seen down.
    opened = 0
    deadline = time.monotonic() + 30
    while sentinel.master_port() != replica.port:
        assert time.monotonic() < deadline, "sentinel did not promote the replica"
        post("open", range(1000 + opened, 1001 + opened))
        opened += 1
        time.sleep(0.05)
    assert events_total(exporter, "open") == opened
    assert opened >= 1
    assert exporter.value("cloudmailin_state_errors_total", operation="connect") >= 1

    # The exporter finds the new master by itself (its maintenance retries
    # the store every second) ...
    assert eventually(lambda: exporter.value("cloudmailin_state_store_up") == 1, 15)
    # ... and times deliveries against registrations made before the failover.
    post("delivery", range(20))
    assert timed_deliveries(exporter) == 20
    assert exporter.value("cloudmailin_unmatched_events_total", kind="delivery") == 0
    assert events_total(exporter, "delivery") == 20
    # The new master holds the state.
    assert redis.Redis(port=replica.port).hlen("{cloudmailin-exporter}:records") >= 20
