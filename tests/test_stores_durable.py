"""SQLite: what a 200 answered is on disk, across clean restarts and kill -9."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from exporter.events import KIND_INDEX
from exporter.stores.sqlite import SQLiteStore
from exporter.timing import UNMATCHED, Claim
from tests.servers import event, eventually, exporter_process, scrape, total


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
        try:
            # The sender stops early only if the server stops answering.
            assert eventually(lambda: len(acknowledged) >= 200 or not sender.is_alive(), 60)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
        finally:
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


def test_records_evicted_for_capacity_stay_gone_after_a_restart(tmp_path: Path) -> None:
    """A record evicted from memory can still sit in a later logged row (an
    update of it); the persisted eviction floor keeps it from coming back."""
    path = tmp_path / "state.db"
    registration, opened = KIND_INDEX["registration"], KIND_INDEX["open"]

    def claim(i: int, index: int, at: float | None = None) -> Claim:
        return (f"c{i}", "r@x.example", index, 1000.0 + i if at is None else at, "")

    async def run() -> tuple[int, list[float], list[float]]:
        store = SQLiteStore(path, ttl=1e9, max_entries=100, timeout=5)
        await store.start()
        for i in range(120):
            claims = [claim(i, registration)]
            if i == 50:
                # c0 is updated in a row written long after it was created...
                claims.append(claim(0, opened, 1050.0))
            await store.apply(b"r%d" % i, claims, 1000.0 + i)
        pending = store.pending
        await store.stop()
        reopened = SQLiteStore(path, ttl=1e9, max_entries=100, timeout=5)
        await reopened.start()
        try:
            assert reopened.pending == pending
            # ...and evicted since: after the restart it is unknown, a kept one is not.
            gone = await reopened.apply(b"g", [claim(0, KIND_INDEX["delivery"], 2000.0)], 2000.0)
            kept = await reopened.apply(b"k", [claim(119, KIND_INDEX["delivery"], 2000.0)], 2000.0)
        finally:
            await reopened.stop()
        return pending, gone.verdicts, kept.verdicts

    pending, gone, kept = asyncio.run(run())
    assert pending <= 100
    assert gone == [UNMATCHED]
    assert kept == [2000.0 - 1119.0]


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


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointer", "none"])
def test_the_checkpointer_empties_the_log_and_commits_never_checkpoint(
    tmp_path: Path, checkpointing: bool
) -> None:
    """Commits only append to the write-ahead log (a checkpoint's fsync in the
    writer held up whole groups); the checkpointer thread copies it into the
    database and empties it once it is over its limit."""
    path = tmp_path / "state.db"
    registration = KIND_INDEX["registration"]

    async def run() -> tuple[int, int, int, list[str]]:
        store = SQLiteStore(
            path, ttl=1e9, max_entries=100_000, timeout=5,
            checkpoint_interval=0.01 if checkpointing else 3600, wal_limit_pages=32,
        )  # fmt: skip
        await store.start()

        async def writer(w: int) -> None:
            for i in range(150):
                claims: list[Claim] = [
                    (f"w{w}-{i}-{j}", "r@x.example", registration, 1000.0, "") for j in range(100)
                ]
                await store.apply(b"w%d-%d" % (w, i), claims, 1000.0)

        try:
            assert store._db is not None
            assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
            await asyncio.gather(*(writer(w) for w in range(4)))
            logged = wal_pages(path)
            # Long enough for many checkpoints; the control need not wait as long.
            deadline = time.monotonic() + (5 if checkpointing else 0.5)
            while wal_pages(path) > 32 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            left = wal_pages(path)
            pending = store.pending
        finally:
            await store.stop()
        threads = [t.name for t in threading.enumerate() if t.name.startswith("sqlite-")]
        return logged, left, pending, threads

    logged, left, pending, threads = asyncio.run(run())
    assert pending == 4 * 150 * 100
    assert threads == []
    if checkpointing:
        assert left <= 32
    else:
        # 600 commits of 100 records each: well over a thousand pages, all kept.
        assert logged == left > 1000

    async def reopen() -> int:
        store = SQLiteStore(path, ttl=1e9, max_entries=100_000, timeout=5)
        await store.start()
        try:
            return store.pending
        finally:
            await store.stop()

    assert asyncio.run(reopen()) == pending
