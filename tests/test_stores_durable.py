"""SQLite: what a 200 answered is on disk, across clean restarts and kill -9."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import exporter_process
from tests.test_cli import run_cli


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


def test_registrations_survive_a_clean_restart(tmp_path: Path) -> None:
    env = {"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{tmp_path}/state.db"}
    with exporter_process(tmp_path, env) as first:
        response = httpx.post(
            first.url + "/events",
            json={"events": [event("registration", f"m{i}") for i in range(50)]},
        )
        assert response.json()["accepted"] == 50
    with exporter_process(tmp_path, env) as second:
        assert total(scrape(second.url), "cloudmailin_pending_messages") == 50
        httpx.post(
            second.url + "/events", json={"events": [event("delivery", f"m{i}") for i in range(50)]}
        )
        samples = scrape(second.url)
    assert total(samples, "cloudmailin_time_to_delivery_seconds_count") == 50
    assert total(samples, "cloudmailin_unmatched_events_total") == 0
    assert total(samples, "cloudmailin_pending_messages") == 0


def test_what_was_answered_200_survives_kill_9(tmp_path: Path) -> None:
    env = {"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{tmp_path}/state.db"}
    acknowledged: list[str] = []
    stop = threading.Event()

    with exporter_process(tmp_path, env) as first:

        def stream() -> None:
            with httpx.Client(base_url=first.url, timeout=5) as client:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    try:
                        r = client.post(
                            "/events", json={"events": [event("registration", f"k{i}")]}
                        )
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200 and r.json()["accepted"] == 1:
                        acknowledged.append(f"k{i}")

        sender = threading.Thread(target=stream)
        sender.start()
        while len(acknowledged) < 200:
            threading.Event().wait(0.01)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        stop.set()
        sender.join(10)
    assert len(acknowledged) >= 200

    with exporter_process(tmp_path, env) as second:
        assert total(scrape(second.url), "cloudmailin_pending_messages") >= len(acknowledged)
        for i in range(0, len(acknowledged), 500):
            httpx.post(
                second.url + "/events",
                json={"events": [event("delivery", m) for m in acknowledged[i : i + 500]]},
            )
        samples = scrape(second.url)
    assert total(samples, "cloudmailin_time_to_delivery_seconds_count") == len(acknowledged)
    assert total(samples, "cloudmailin_unmatched_events_total") == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent-dir/state.db", "directory /nonexistent-dir does not exist"),
        ("sqlite:////etc/hostname/state.db", "directory /etc/hostname does not exist"),
    ],
)
def test_unusable_sqlite_path_fails_at_start_up_with_one_line(url: str, message: str) -> None:
    result = run_cli(env={"CLOUDMAILIN_EXPORTER_STATE_URL": url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"cloudmailin-exporter: state store: {message}"]


def test_sqlite_file_that_is_a_directory_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    result = run_cli(env={"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{tmp_path}/state.db"})
    assert result.returncode == 2
    assert result.stderr.startswith("cloudmailin-exporter: state store: cannot open")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_state_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    result = run_cli(env={"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{path}"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"cloudmailin-exporter: state store: cannot open {path}: "
        "schema version 99; this exporter reads version 1"
    )


def test_superseded_rows_are_folded_on_restart(tmp_path: Path) -> None:
    """The file is a log: a message's later state wins over its registration row."""
    env = {"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{tmp_path}/state.db"}
    with exporter_process(tmp_path, env) as first:
        httpx.post(first.url + "/events", json={"events": [event("registration", "f1")]})
        httpx.post(first.url + "/events", json={"events": [event("delivery", "f1")]})
    with exporter_process(tmp_path, env) as second:
        assert total(scrape(second.url), "cloudmailin_pending_messages") == 0
        again = httpx.post(second.url + "/events", json={"events": [event("delivery", "f1")]})
        assert again.json() == {"accepted": 0, "rejected": 0, "duplicates": 1}
