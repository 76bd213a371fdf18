"""Store openers for the shared contract suite: memory, SQLite and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from bench.processes import RedisServer
from exporter.stores.base import StateStore
from exporter.stores.memory import MemoryStore
from exporter.stores.redis import RedisStore
from exporter.stores.sqlite import SQLiteStore


@asynccontextmanager
async def memory_store(ttl: float, max_entries: int, _tmp: Path) -> AsyncIterator[StateStore]:
    store = MemoryStore(ttl, max_entries)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


@asynccontextmanager
async def sqlite_store(ttl: float, max_entries: int, tmp: Path) -> AsyncIterator[StateStore]:
    store = SQLiteStore(tmp / "state.db", ttl, max_entries, timeout=5)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def redis_opener(
    server: RedisServer,
) -> Callable[[float, int, Path], AbstractAsyncContextManager[StateStore]]:
    @asynccontextmanager
    async def open_redis(ttl: float, max_entries: int, _tmp: Path) -> AsyncIterator[StateStore]:
        server.flush()
        store = RedisStore(server.url, ttl, max_entries, timeout=5)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()

    return open_redis
