"""State stores, chosen by the scheme of CLOUDMAILIN_EXPORTER_STATE_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from exporter.settings import Settings
from exporter.stores.base import StateStore
from exporter.stores.memory import MemoryStore
from exporter.stores.redis import RedisStore
from exporter.stores.sqlite import SQLiteStore, path_from_url


def open_store(settings: Settings) -> StateStore:
    scheme = urlsplit(settings.state_url).scheme
    ttl = settings.pending_ttl_seconds
    entries = settings.pending_max_entries
    timeout = settings.store_timeout_seconds
    if scheme == "memory":
        return MemoryStore(ttl, entries, timeout)
    if scheme == "sqlite":
        return SQLiteStore(path_from_url(settings.state_url), ttl, entries, timeout)
    return RedisStore(settings.state_url, ttl, entries, timeout)
