"""SQLite store: one file (on a volume), survives restarts and crashes; one replica.

One replica is the only writer of its file, so the store keeps every record
in a MemoryStore as well and decides there, as fast as the memory store;
SQLite is where each request's changed records are committed before it is
answered, and where they are read back from at start-up.

The file is a log: each request appends one row holding its body's digest
and the new state of every record it changed (24 bytes each, `table.ROW`,
written by the record table itself), and start-up folds the rows in order.
Message keys are random, so updating a row per record in place would dirty a
random page per event; one row per request dirties the last page or two and
costs SQLite one insert instead of a hundred. A row leaves when every record
in it has: at expiry once it was written before the cutoff, at capacity
eviction once it was written no later than the newest evicted record was
created. Records of older rows that outlive their row (an update logged
later) are filtered at start-up by the persisted eviction floor, or expire
at the first maintenance.
One thread owns the connection and commits in groups: requests that arrive
while a transaction is being written go together into the next one. Another
thread, with a connection of its own, copies the write-ahead log into the
database file (a checkpoint, which ends with an fsync): done by the writer
after a commit, as SQLite does by default, it held up every request of that
group for about 9 ms.

One process per file: `start` takes an exclusive lock on a file beside the
database (`<db>.lock`) and holds it until `stop`; a second process pointed at
the same file refuses to start. Two writers would each decide from their own
in-memory copy while appending to one log, silently corrupting timing and
duplicate state. The lock is `flock` on a sidecar rather than
`PRAGMA locking_mode=EXCLUSIVE` because the checkpointer's second
connection must still reach the database, and SQLite's own POSIX locks
are released whenever any descriptor of the file is closed in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exporter.stores.base import Outcome, StateStore, StoreError, body_digest
from exporter.stores.memory import MemoryStore
from exporter.stores.table import ROW, message_keys, packed
from exporter.timing import Claim

log = logging.getLogger(__name__)

# Most webhooks applied in one transaction: enough to absorb every request a
# busy CloudMailin has in flight, few enough that none waits long.
GROUP: Final = 64
# 32 MiB of page cache: the interior pages of a million-message table and
# its index stay in memory, so a lookup reads at most its leaf.
CACHE_KIB: Final = 32 * 1024

# How often the checkpointer copies the log into the database file. Passive
# checkpoints never make the writer wait, but under unbroken writes one may
# never find the log's end; past WAL_LIMIT_PAGES a truncating checkpoint
# holds the writer off while it copies what the passive ones left (little)
# and empties the log. 16,384 pages of SQLite's default 4 KiB are 64 MiB:
# a bound on the disk and the start-up replay that leaves room for several
# seconds of a busy sender's webhooks.
CHECKPOINT_INTERVAL: Final = 0.2
WAL_LIMIT_PAGES: Final = 16_384

# A file of another version is refused at start-up. None was released before
# 3 (1 logged one row per record, 2 keyed records by BLAKE2b), so there is
# nothing to upgrade.
SCHEMA_VERSION: Final = 3
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    written INTEGER NOT NULL,
    body BLOB NOT NULL,
    records BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_written ON batches (written);
CREATE TABLE IF NOT EXISTS evicted (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    until INTEGER NOT NULL
);
"""


def path_from_url(url: str) -> Path:
    """sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy reads them."""
    return Path(url.removeprefix("sqlite:///"))


@dataclass
class _Job:
    write: Callable[[sqlite3.Connection], None]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class SQLiteStore(StateStore):
    remote = True

    def __init__(
        self,
        path: Path,
        ttl: float,
        max_entries: int,
        timeout: float,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        wal_limit_pages: int = WAL_LIMIT_PAGES,
    ) -> None:
        super().__init__(ttl, max_entries, timeout)
        self.path = path
        self.checkpoint_interval = checkpoint_interval
        self.wal_limit_pages = wal_limit_pages
        self._memory = MemoryStore(ttl, max_entries)
        self._memory.dropped_until = -1
        # The memory store counts evictions; this store reports them.
        self.evicted = self._memory.evicted
        self._db: sqlite3.Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

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
        self._take_lock()
        try:
            self._db = await asyncio.to_thread(self._open)
            checkpoints = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._release_lock()
            raise ValueError(f"cannot open {self.path}: {exc}") from None
        self.pending = self._memory.pending
        self._stopping.clear()
        self._worker = threading.Thread(target=self._work, name="sqlite-store", daemon=True)
        self._worker.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint, args=(checkpoints,), name="sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _take_lock(self) -> None:
        """Hold `<db>.lock` exclusively, or raise ValueError: one process per file."""
        lock = self.lock_path
        try:
            # os.access above trusts permission bits, which root ignores;
            # creating the lock file is the real test of the directory.
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ValueError(f"cannot create {lock}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(
                f"{self.path} is in use by another exporter process (it holds {lock}); "
                "one process per SQLite file: give each its own file, or use Redis"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise ValueError(f"cannot lock {lock}: {exc.strerror}") from None
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            # Closing the descriptor releases the flock.
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        # Checked first: a file this exporter does not know is left untouched
        # (switching it to WAL would already rewrite its header).
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise sqlite3.DatabaseError(
                f"schema version {version}, not {SCHEMA_VERSION}: point"
                " CLOUDMAILIN_EXPORTER_STATE_URL at a new file (this one can be deleted)"
            )
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives the process
        # being killed; only a power cut can lose the last ones, for a
        # fraction of FULL's fsync cost on every commit.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Checkpoints are the checkpointer thread's (see the module's docstring).
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        (floor,) = db.execute("SELECT coalesce(max(until), -1) FROM evicted").fetchone()
        # Later rows of a key are its later states: the table's load folds
        # them in order, leaving the newest at the position of the first (its
        # creation). A record's creation second never changes, so the
        # eviction floor can be applied row by row.
        records = (
            (key, packed(created, registered, seen))
            for (blob,) in db.execute("SELECT records FROM batches ORDER BY id")
            for key, registered, created, seen in ROW.iter_unpack(blob)
            if created > floor
        )
        bodies = list(db.execute("SELECT body, written FROM batches WHERE body != x'' ORDER BY id"))
        self._memory.load(records, bodies)
        return db

    async def stop(self) -> None:
        if self._checkpointer is not None:
            self._stopping.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._worker is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._worker.join)
            self._worker = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    # --- the worker thread -----------------------------------------------

    def _work(self) -> None:
        db = self._db
        assert db is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            group = [job]
            while len(group) < GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                group.append(more)
            self._commit(db, group)

    def _commit(self, db: sqlite3.Connection, group: list[_Job]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    job.write(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except Exception as exc:
            # Whatever failed is the group's answer (the store maps SQLite's
            # errors; anything else reaches the webhook's 500). The thread
            # must outlive it: without it every later write would wait for
            # its timeout, for the life of the process.
            _answer(group, exc)
            return
        _answer(group, None)

    # --- the checkpointer thread --------------------------------------------

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        failing = False
        try:
            while not self._stopping.wait(self.checkpoint_interval):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > self.wal_limit_pages:
                        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error as exc:
                    # The log keeps every commit meanwhile; say so once per streak.
                    if not failing:
                        log.warning("checkpoint failed", extra={"error": str(exc)})
                    failing = True
                else:
                    failing = False
        finally:
            db.close()

    async def _write(self, write: Callable[[sqlite3.Connection], None]) -> None:
        """Run `write` in the next group transaction; return once it is committed."""
        if self._db is None or self._worker is None:
            raise StoreError("connect", "store is not open")
        loop = asyncio.get_running_loop()
        job = _Job(write, loop, loop.create_future())
        self._jobs.put(job)
        await job.future

    # --- store operations --------------------------------------------------

    async def apply(self, body: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        touched = bytearray()
        keys = message_keys(claims)
        body_key = body_digest(body)
        outcome = self._memory.apply_now(body_key, claims, now, keys, touched)
        if outcome.body_seen:
            return outcome
        evicted_until = self._take_dropped()
        self.pending = self._memory.pending
        written = int(now)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO batches (written, body, records) VALUES (?, ?, ?)",
                (written, body_key, touched),
            )
            if evicted_until is not None:
                _evict(db, evicted_until)

        try:
            await self._write(write)
        except sqlite3.Error as exc:
            raise StoreError("write", str(exc)) from exc
        return outcome

    async def maintain(self, now: float) -> None:
        await self._memory.maintain(now)
        self.pending = self._memory.pending
        self._take_dropped()
        cutoff = now - self.ttl

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM batches WHERE written < ?", (cutoff,))

        try:
            await self._write(write)
        except sqlite3.Error as exc:
            raise StoreError("expire", str(exc)) from exc

    def _take_dropped(self) -> int | None:
        """The creation second of the newest record the memory store evicted, if any.

        It evicts oldest first, so every row created up to then goes too.
        """
        newest, self._memory.dropped_until = self._memory.dropped_until, -1
        return None if newest is None or newest < 0 else newest


def _evict(db: sqlite3.Connection, until: int) -> None:
    """Forget records created up to `until` (the memory store evicted them)."""
    db.execute("DELETE FROM batches WHERE written <= ?", (until,))
    db.execute(
        "INSERT INTO evicted (id, until) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET until = max(until, excluded.until)",
        (until,),
    )


def _answer(group: list[_Job], exc: BaseException | None) -> None:
    """Settle the group's futures: one wake-up of each event loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for job in group:
        by_loop.setdefault(job.loop, []).append(job.future)
    for loop, futures in by_loop.items():
        loop.call_soon_threadsafe(_settle, futures, exc)


def _settle(futures: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for future in futures:
        # A caller that timed out has stopped waiting; the write stands anyway.
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
