"""A failing state store: counting goes on, failures are counted, readiness says so,
and the exporter recovers by itself when the store answers again."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from bench.processes import redis_server
from exporter.stores.base import OPERATIONS
from tests.servers import Running, eventually, running_exporter


def errors(exporter: Running) -> float:
    return sum(exporter.value("cloudmailin_state_errors_total", operation=op) for op in OPERATIONS)


def timed(exporter: Running) -> float:
    return exporter.value("cloudmailin_time_since_registration_seconds_count", kind="delivery")


def store_up(exporter: Running) -> bool:
    """The outage as an operator sees it: the gauge and the /readyz body agree,
    and readiness itself stays 200 either way."""
    response = exporter.client.get("/readyz")
    assert response.status_code == 200
    gauge = exporter.value("cloudmailin_state_store_up")
    body = response.json()["state_store"]
    assert (gauge, body) in ((1, "up"), (0, "down"))
    return gauge == 1


def post_pair(exporter: Running, message_id: str) -> None:
    ev = {"recipient": f"{message_id}@f.example", "message_id": message_id}
    assert exporter.post([{"kind": "registration", **ev}]).status_code == 200
    assert exporter.post([{"kind": "delivery", **ev}]).status_code == 200


def test_redis_stopped_and_started_again(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path) as server,
        running_exporter(state_url=server.url, store_timeout_seconds=0.3) as exporter,
    ):
        post_pair(exporter, "before")
        assert timed(exporter) == 1
        assert store_up(exporter)

        server.stop()
        response = exporter.post(
            [{"kind": "bounce", "recipient": "a@f.example", "message_id": "x"}]
        )
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert exporter.value("cloudmailin_events_total", kind="bounce", domain="other") == 1
        assert errors(exporter) >= 1
        assert eventually(lambda: not store_up(exporter), 5)
        assert exporter.client.get("/healthz").status_code == 200

        server.start()
        assert eventually(lambda: store_up(exporter), 10)
        failures = errors(exporter)
        post_pair(exporter, "after")
        assert timed(exporter) == 2
        assert errors(exporter) == failures


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with running_exporter(state_url=f"sqlite:///{path}", store_timeout_seconds=0.2) as exporter:
        post_pair(exporter, "before")
        intruder = sqlite3.connect(path, isolation_level=None)
        intruder.execute("BEGIN EXCLUSIVE")
        try:
            response = exporter.post(
                [{"kind": "registration", "recipient": "a@f.example", "message_id": "locked"}]
            )
            assert response.json()["accepted"] == 1
            assert (
                exporter.value("cloudmailin_events_total", kind="registration", domain="other") == 2
            )
            assert errors(exporter) >= 1
            assert eventually(lambda: not store_up(exporter), 5)
        finally:
            intruder.execute("ROLLBACK")
            intruder.close()
        assert eventually(lambda: store_up(exporter), 10)
        post_pair(exporter, "after")
        assert timed(exporter) == 2


def test_redis_unreachable_at_start_up_starts_down_then_recovers(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        server.stop()
        with running_exporter(state_url=server.url, store_timeout_seconds=0.3) as exporter:
            assert not store_up(exporter)
            assert exporter.value("cloudmailin_state_errors_total", operation="connect") >= 1
            assert exporter.post([{"kind": "open", "recipient": "a@f.example"}]).status_code == 200
            server.start()
            assert eventually(lambda: store_up(exporter), 10)


def test_redis_that_stops_answering_is_timed_out_and_recovers(tmp_path: Path) -> None:
    """A Redis that holds the connection but never answers (frozen, or a
    network that drops packets): every call ends at the store timeout."""
    with (
        redis_server(tmp_path) as server,
        running_exporter(state_url=server.url, store_timeout_seconds=0.3) as exporter,
    ):
        post_pair(exporter, "before")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            response = exporter.post(
                [{"kind": "bounce", "recipient": "a@f.example", "message_id": "frozen"}]
            )
            assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
            assert errors(exporter) >= 1
            assert eventually(lambda: not store_up(exporter), 5)
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert eventually(lambda: store_up(exporter), 10)
        post_pair(exporter, "after")
        assert timed(exporter) == 2
