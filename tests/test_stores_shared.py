"""Redis: two exporter processes behind one Redis behave like one exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tests.servers import Process, exporter_process
from tests.stack import RedisServer, redis_server
from tests.test_stores_durable import event, scrape, total


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[RedisServer, Process, Process]]:
    with redis_server(tmp_path) as server:
        env = {"CLOUDMAILIN_EXPORTER_STATE_URL": server.url}
        with exporter_process(tmp_path, env) as a, exporter_process(tmp_path, env) as b:
            yield server, a, b


def post(proc: Process, body: bytes) -> dict[str, int]:
    response = httpx.post(
        proc.url + "/events", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    summary: dict[str, int] = response.json()
    return summary


def events(*items: dict[str, str]) -> bytes:
    return orjson.dumps({"events": list(items)})


def test_registration_on_one_delivery_on_the_other(
    replicas: tuple[RedisServer, Process, Process],
) -> None:
    _, a, b = replicas
    post(a, events(*(event("registration", f"r{i}") for i in range(20))))
    post(b, events(*(event("delivery", f"r{i}") for i in range(20))))
    sa, sb = scrape(a.url), scrape(b.url)
    name = "cloudmailin_time_to_delivery_seconds_count"
    assert total(sa, name) + total(sb, name) == 20
    assert total(sb, name) == 20
    assert total(sb, "cloudmailin_unmatched_events_total") == 0


def test_duplicates_are_recognised_across_replicas(
    replicas: tuple[RedisServer, Process, Process],
) -> None:
    _, a, b = replicas
    body = events(event("registration", "d1"), event("open", "d1"))
    assert post(a, body) == {"accepted": 2, "rejected": 0, "duplicates": 0}
    # CloudMailin's retry of the same body lands on the other pod.
    assert post(b, body) == {"accepted": 0, "rejected": 0, "duplicates": 2}
    # A second copy of a once-per-message event, in another body.
    assert post(a, events(event("delivery", "d1"))) == {
        "accepted": 1,
        "rejected": 0,
        "duplicates": 0,
    }
    assert post(b, events(event("delivery", "d1"), event("open", "x"))) == {
        "accepted": 1, "rejected": 0, "duplicates": 1,
    }  # fmt: skip
    sa, sb = scrape(a.url), scrape(b.url)
    delivered = ("cloudmailin_events_total", (("domain", "other"), ("kind", "delivery")))
    assert sa[delivered] + sb[delivered] == 1


def test_pending_is_the_shared_number_on_every_replica(
    replicas: tuple[RedisServer, Process, Process],
) -> None:
    _, a, b = replicas
    post(a, events(*(event("registration", f"p{i}") for i in range(7))))
    post(b, events(*(event("registration", f"q{i}") for i in range(5))))
    post(b, events(event("bounce", "p0")))
    # The gauge is refreshed by each replica's maintenance, every second.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pa = total(scrape(a.url), "cloudmailin_pending_messages")
        pb = total(scrape(b.url), "cloudmailin_pending_messages")
        if pa == pb == 11:
            break
        time.sleep(0.2)
    assert (pa, pb) == (11, 11)


def test_records_carry_a_redis_ttl(replicas: tuple[RedisServer, Process, Process]) -> None:
    server, a, _ = replicas
    post(a, events(event("registration", "t1")))
    client = redis.Redis(port=server.port)
    keys = client.keys("{cloudmailin-exporter}:*")
    assert len(keys) == 4  # records, their order, bodies, the pending count
    for key in keys:
        assert 0 < client.ttl(key) <= int(259_200 * 1.1) + 60
