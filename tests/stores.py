"""Store factories for the shared contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from exporter.stores.base import StateStore
from exporter.stores.memory import MemoryStore


@asynccontextmanager
async def memory_store(ttl: float, max_entries: int, _tmp: Path) -> AsyncIterator[StateStore]:
    store = MemoryStore(ttl, max_entries)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()
