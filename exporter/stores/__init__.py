"""State stores, chosen by the scheme of CLOUDMAILIN_EXPORTER_STATE_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from exporter.settings import Settings
from exporter.stores.base import StateStore
from exporter.stores.memory import MemoryStore


def open_store(settings: Settings) -> StateStore:
    scheme = urlsplit(settings.state_url).scheme
    ttl = settings.pending_ttl_seconds
    entries = settings.pending_max_entries
    timeout = settings.store_timeout_seconds
    if scheme == "memory":
        return MemoryStore(ttl, entries, timeout)
    raise ValueError(f"state store {scheme}:// is not available in this build")
