"""Redis: two exporter processes behind one Redis behave like one exporter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from bench.processes import RedisServer, redis_server
from tests.servers import Process, event, eventually, exporter_process, scrape, total

pytestmark = pytest.mark.e2e  # two exporter processes and a redis-server


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


def events(*items: dict[str, Any]) -> bytes:
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
    def both() -> tuple[float, float]:
        return (
            total(scrape(a.url), "cloudmailin_pending_messages"),
            total(scrape(b.url), "cloudmailin_pending_messages"),
        )

    assert eventually(lambda: both() == (11, 11)), both()


def test_records_carry_a_redis_ttl(replicas: tuple[RedisServer, Process, Process]) -> None:
    server, a, _ = replicas
    post(a, events(event("registration", "t1")))
    client = redis.Redis(port=server.port)
    keys = client.keys("{cloudmailin-exporter}:*")
    assert len(keys) == 4  # records, their order, bodies, the pending count
    for key in keys:
        assert 0 < client.ttl(key) <= int(259_200 * 1.1) + 60


def kind_total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, kind: str
) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and ("kind", kind) in labels)


def load(
    proc: Process, bodies: list[bytes], results: list[dict[str, int]], deadline: float
) -> None:
    """Post `bodies` in order, as fast as the replica answers, until `deadline`."""
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        for body in bodies:
            if time.monotonic() > deadline:
                return
            response = client.post(
                "/events", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200
            results.append(response.json())


def test_two_replicas_under_load_count_every_event_once(
    replicas: tuple[RedisServer, Process, Process],
) -> None:
    _, a, b = replicas
    rounds, per_batch = 150, 20
    # Stamped, so that no delivery looks older than its registration to a
    # replica whose clock was read a moment earlier (that is not timed).
    registered, delivered = time.time() - 60, time.time() - 30

    def stamped(kind: str, message_id: str, at: float) -> dict[str, Any]:
        return {**event(kind, message_id), "timestamp": at}

    # On A: registrations, and a delivery of r<k> that B also posts, in
    # another body, at about the same time.
    a_bodies = [
        events(
            *(stamped("registration", f"m{k}-{i}", registered) for i in range(per_batch)),
            stamped("delivery", f"r{k}", delivered),
        )
        for k in range(rounds)
    ]
    # On B: the deliveries of A's registrations, the repeated delivery, and
    # every fourth of A's bodies again: CloudMailin's retry landing on the
    # other pod, racing the original.
    b_bodies: list[bytes] = []
    for k in range(rounds):
        b_bodies.append(
            events(
                *(stamped("delivery", f"m{k}-{i}", delivered) for i in range(per_batch)),
                stamped("delivery", f"r{k}", delivered),
            )
        )
        if k % 4 == 0:
            b_bodies.append(a_bodies[k])
    retried = [a_bodies[k] for k in range(0, rounds, 4)]
    retried_events = sum(len(orjson.loads(body)["events"]) for body in retried)
    results: dict[str, list[dict[str, int]]] = {"a": [], "b": []}
    deadline = time.monotonic() + 60
    threads = [
        threading.Thread(target=load, args=(a, a_bodies, results["a"], deadline)),
        threading.Thread(target=load, args=(b, b_bodies, results["b"], deadline)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5)
    assert not any(thread.is_alive() for thread in threads)
    assert (len(results["a"]), len(results["b"])) == (len(a_bodies), len(b_bodies))

    unique = rounds * (per_batch + 1) + rounds * per_batch
    repeats = rounds + retried_events
    answers: list[dict[str, Any]] = results["a"] + results["b"]
    assert sum(r["accepted"] for r in answers) == unique
    assert sum(r["duplicates"] for r in answers) == repeats
    assert all(r["rejected"] == 0 for r in answers)
    # Each retried body was taken whole by one replica and refused whole by
    # the other.
    whole = [r for r in answers if r["duplicates"] == per_batch + 1]
    assert len(whole) == len(retried)

    sa, sb = scrape(a.url), scrape(b.url)
    counted = total(sa, "cloudmailin_events_total") + total(sb, "cloudmailin_events_total")
    assert counted == unique
    duplicates = total(sa, "cloudmailin_duplicate_events_total") + total(
        sb, "cloudmailin_duplicate_events_total"
    )
    assert duplicates == repeats
    # Every delivery counted was either timed (its registration came first,
    # through either replica) or unmatched (r<k> has none; a delivery may
    # also overtake its registration), never both, never lost.
    timed = total(sa, "cloudmailin_time_to_delivery_seconds_count") + total(
        sb, "cloudmailin_time_to_delivery_seconds_count"
    )
    unmatched = kind_total(sa, "cloudmailin_unmatched_events_total", "delivery") + kind_total(
        sb, "cloudmailin_unmatched_events_total", "delivery"
    )
    assert timed + unmatched == rounds * per_batch + rounds
    assert unmatched >= rounds
