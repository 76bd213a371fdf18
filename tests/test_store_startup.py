"""Start-up of the state store, through the installed command: one SQLite file
has one writer, and every store that cannot start says, in one line, which
setting to fix."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.servers import exporter_process, run_cli

pytestmark = pytest.mark.e2e  # real exporter processes

SETTING = "CLOUDMAILIN_EXPORTER_STATE_URL"
PREFIX = f"cloudmailin-exporter: state store ({SETTING} / --state-url): "


def refused_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start-up prints; fails unless that is all it prints."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0].removeprefix(PREFIX)


def post(url: str, message_id: str) -> httpx.Response:
    event = {"kind": "registration", "recipient": "a@lock.example", "message_id": message_id}
    return httpx.post(url + "/events", json={"events": [event]}, timeout=10)


def registrations(url: str) -> str:
    text = httpx.get(url + "/metrics", timeout=10).text
    return next(
        line
        for line in text.splitlines()
        if line.startswith("cloudmailin_events_total{")
        and 'kind="registration"' in line
        and 'domain="other"' in line
    )


def test_a_second_process_on_one_sqlite_file_is_refused_and_the_first_keeps_serving(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    env = {"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{path}"}
    with exporter_process(tmp_path, env=env) as first:
        assert post(first.url, "one").status_code == 200
        second = run_cli(env=env)
        reason = refused_line(second)
        assert str(path) in reason
        assert "another exporter process" in reason
        # The first still answers, counts and times, on the file it holds.
        assert post(first.url, "two").status_code == 200
        assert registrations(first.url).endswith(" 2.0")
        assert httpx.get(first.url + "/readyz").json() == {"status": "ready", "state_store": "up"}
    # Once the first has stopped, the lock is free: the file takes a new process.
    with exporter_process(tmp_path, env=env) as third:
        assert post(third.url, "three").status_code == 200


def test_the_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    env = {"CLOUDMAILIN_EXPORTER_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}"}
    with exporter_process(tmp_path, env=env) as first:
        first.proc.kill()
        first.proc.wait(10)
    with exporter_process(tmp_path, env=env) as second:
        assert post(second.url, "after-kill").status_code == 200


def not_sqlite(tmp: Path) -> str:
    path = tmp / "state.db"
    path.write_bytes(b"this is not a database, it only looks like one " * 200)
    return f"sqlite:///{path}"


def schema(version: int) -> Callable[[Path], str]:
    """A state file of another schema version (1 and 2 were never released)."""

    def make(tmp: Path) -> str:
        path = tmp / "state.db"
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {version}")
        return f"sqlite:///{path}"

    return make


unknown_schema = schema(99)


def directory_as_file(tmp: Path) -> str:
    (tmp / "state.db").mkdir()
    return f"sqlite:///{tmp / 'state.db'}"


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda _: "sqlite:////nonexistent-dir/state.db", "directory /nonexistent-dir does not"),
        (lambda _: "sqlite:////etc/hostname/state.db", "directory /etc/hostname does not exist"),
        # sysfs refuses new files even to root, whose writes no permission bit stops.
        (lambda _: "sqlite:////sys/state.db", "cannot create /sys/state.db.lock"),
        (directory_as_file, "cannot open"),
        (not_sqlite, "file is not a database"),
        (schema(1), "schema version 1, not 3: point CLOUDMAILIN_EXPORTER_STATE_URL at a new"),
        (schema(2), "schema version 2, not 3: point CLOUDMAILIN_EXPORTER_STATE_URL at a new"),
        (unknown_schema, "schema version 99, not 3"),
        (lambda _: "redis://localhost:notaport/0", "invalid Redis URL"),
        (lambda _: "rediss://localhost:99999/0", "invalid Redis URL"),
    ],
    ids=[
        "missing-directory",
        "directory-is-a-file",
        "unwritable-directory",
        "file-is-a-directory",
        "not-sqlite",
        "schema-1",
        "schema-2",
        "unknown-schema",
        "redis-port-not-a-number",
        "redis-port-out-of-range",
    ],
)
def test_every_store_start_up_failure_names_the_setting(
    tmp_path: Path, make_url: object, expected: str
) -> None:
    assert callable(make_url)
    url = make_url(tmp_path)
    result = run_cli(env={SETTING: url})
    assert expected in refused_line(result)


@pytest.mark.parametrize("make_url", [schema(1), schema(2), unknown_schema, not_sqlite])
def test_a_refused_sqlite_file_is_left_as_it_was(tmp_path: Path, make_url: object) -> None:
    assert callable(make_url)
    url = make_url(tmp_path)
    before = (tmp_path / "state.db").read_bytes()
    refused_line(run_cli(env={SETTING: url}))
    assert (tmp_path / "state.db").read_bytes() == before
