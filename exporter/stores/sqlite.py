"""SQLite store: one file (on a volume), survives restarts and crashes; one replica."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from exporter.stores.base import Outcome, StateStore, StoreError
from exporter.timing import DUPLICATE, TERMINAL_BITS, Claim, Record, decide

T = TypeVar("T")
# SQLite's limit on bound parameters is 32766; 500 keys a query keeps each
# statement small while a 100-event batch needs one.
CHUNK = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    key BLOB PRIMARY KEY,
    created REAL NOT NULL,
    registered_at REAL,
    seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_created ON messages (created);
CREATE TABLE IF NOT EXISTS bodies (key BLOB PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bodies_seen_at ON bodies (seen_at);
"""
PENDING_SQL = f"registered_at IS NOT NULL AND (seen & {TERMINAL_BITS}) = 0"


def message_key(claim: Claim) -> bytes:
    return hashlib.blake2b(f"{claim[0]}\x00{claim[1]}".encode(), digest_size=16).digest()


def path_from_url(url: str) -> Path:
    """sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy reads them."""
    return Path(url.removeprefix("sqlite:///"))


class SQLiteStore(StateStore):
    remote = True

    def __init__(self, path: Path, ttl: float, max_entries: int, timeout: float) -> None:
        super().__init__(ttl, max_entries, timeout)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._entries = 0
        # One thread owns the connection: SQLite calls block, and must not
        # run concurrently on one connection.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

    async def start(self) -> None:
        if self._db is not None:
            return
        directory = self.path.parent
        if not directory.is_dir():
            raise ValueError(f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK)
        ):
            raise ValueError(f"{self.path} is not writable")
        try:
            await self._run(self._open)
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open {self.path}: {exc}") from None

    def _open(self) -> None:
        db = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process
        # being killed; only a power cut can lose the last ones, for a
        # fraction of FULL's fsync cost on every webhook.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._entries = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        pending_sql = f"SELECT COUNT(*) FROM messages WHERE {PENDING_SQL}"  # noqa: S608 - constant
        self.pending = db.execute(pending_sql).fetchone()[0]
        self._db = db

    async def stop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("connect", "store is not open")
        return self._db

    async def apply(self, body_key: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        try:
            return await self._run(lambda: self._apply(body_key, claims, now))
        except sqlite3.Error as exc:
            raise StoreError("write", str(exc)) from exc

    def _apply(self, body_key: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        db = self._connection()
        cutoff = now - self.ttl
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT seen_at FROM bodies WHERE key = ?", (body_key,)).fetchone()
            if row is not None and row[0] >= cutoff:
                db.execute("ROLLBACK")
                return Outcome(body_seen=True)
            db.execute("INSERT OR REPLACE INTO bodies VALUES (?, ?)", (body_key, now))
            keys = [message_key(c) for c in claims]
            records = self._load(db, list(set(keys)), cutoff)
            verdicts = []
            changed: dict[bytes, Record] = {}
            created = 0
            pending = 0
            for key, claim in zip(keys, claims, strict=True):
                record = records.get(key)
                if record is None:
                    record = records[key] = Record(created=now)
                    created += 1
                was_pending = record.pending
                verdict = decide(record, claim)
                verdicts.append(verdict)
                if verdict != DUPLICATE:
                    changed[key] = record
                    pending += record.pending - was_pending
            db.executemany(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)",
                [(k, r.created, r.registered_at, r.seen) for k, r in changed.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._entries += created
        self.pending += pending
        return Outcome(body_seen=False, verdicts=verdicts)

    @staticmethod
    def _load(db: sqlite3.Connection, keys: list[bytes], cutoff: float) -> dict[bytes, Record]:
        out = {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, created, registered_at, seen in db.execute(
                f"SELECT key, created, registered_at, seen FROM messages WHERE key IN ({marks})",  # noqa: S608 - only placeholders
                chunk,
            ):
                # An entry past its age is gone, even before the sweep removes it.
                if created >= cutoff:
                    out[key] = Record(created, registered_at, seen)
        return out

    async def maintain(self, now: float) -> None:
        try:
            await self._run(lambda: self._maintain(now))
        except sqlite3.Error as exc:
            raise StoreError("expire", str(exc)) from exc

    def _maintain(self, now: float) -> None:
        db = self._connection()
        cutoff = now - self.ttl
        self._delete(db, "created < ?", (cutoff,), "expired")
        excess = self._entries - self.max_entries
        if excess > 0:
            row = db.execute(
                "SELECT created FROM messages ORDER BY created LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()
            if row is not None:
                self._delete(db, "created <= ?", (row[0],), "capacity")
        db.execute("DELETE FROM bodies WHERE seen_at < ?", (cutoff,))

    def _delete(
        self, db: sqlite3.Connection, where: str, args: tuple[float, ...], reason: str
    ) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            pending = db.execute(
                f"SELECT COUNT(*) FROM messages WHERE {where} AND {PENDING_SQL}",  # noqa: S608 - fixed text
                args,
            ).fetchone()[0]
            deleted = db.execute(f"DELETE FROM messages WHERE {where}", args).rowcount  # noqa: S608 - fixed text
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._entries -= deleted
        self.pending -= pending
        self.evicted[reason] += pending

    def size_on_disk(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
