"""The in-process store: fastest, lost on restart, one replica only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from xxhash import xxh3_64_intdigest

from exporter.stores.base import Outcome, StateStore
from exporter.stores.table import RecordTable
from exporter.timing import Claim

# Capacity evictions remove 1% more than needed so that a full store does not
# walk to its oldest entry again on every new message.
_EVICTION_SLACK: Final = 0.01


class MemoryStore(StateStore):
    def __init__(self, ttl: float, max_entries: int, timeout: float = 1.0) -> None:
        super().__init__(ttl, max_entries, timeout)
        self.table = RecordTable()
        self._bodies: dict[int, float] = {}
        # When a durable store keeps this one as its cache, it collects the
        # creation second of the newest record dropped here, to drop up to
        # it on disk too.
        self.dropped_until: int | None = None

    def __len__(self) -> int:
        return len(self.table)

    async def apply(self, body: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        return self.apply_now(body, claims, now)

    def apply_now(
        self,
        body: bytes,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None = None,
        touched: bytearray | None = None,
    ) -> Outcome:
        """`apply`, synchronously, for this store and for a durable store that
        keeps it; `keys` and `touched` as in `RecordTable.apply`."""
        bodies = self._bodies
        # Only this process remembers bodies, so 64 bits serve: a body
        # mistaken for a retry among a million remembered is a one in thirty
        # million chance. XXH3, five times faster than Python's own hash on
        # a 10 kB body (timing.message_key says why a fast hash will do).
        body_key = xxh3_64_intdigest(body)
        if body_key in bodies:
            return Outcome(body_seen=True)
        bodies[body_key] = now
        table = self.table
        verdicts = table.apply(claims, now, keys, touched)
        self.pending = table.pending
        if len(table) > self.max_entries or len(bodies) > self.max_entries:
            self._evict_capacity()
        return Outcome(body_seen=False, verdicts=verdicts)

    def load(
        self, records: Iterable[tuple[int, int]], bodies: Iterable[tuple[bytes, float]]
    ) -> None:
        """Fill an empty store, oldest first, from what a durable store kept."""
        self.table.load(records)
        self._bodies.update((xxh3_64_intdigest(body), seen) for body, seen in bodies)
        self.pending = self.table.pending

    async def maintain(self, now: float) -> None:
        cutoff = now - self.ttl
        self._drop(len(self.table), "expired", cutoff)
        old_bodies = []
        for body, seen in self._bodies.items():
            if seen >= cutoff:
                break
            old_bodies.append(body)
        for body in old_bodies:
            del self._bodies[body]

    def _evict_capacity(self) -> None:
        target = int(self.max_entries * (1 - _EVICTION_SLACK))
        excess = len(self.table) - target
        if excess > 0:
            self._drop(excess, "capacity")
        excess = len(self._bodies) - target
        if excess > 0:
            for body in list(self._bodies)[:excess]:
                del self._bodies[body]

    def _drop(self, count: int, reason: str, before: float | None = None) -> None:
        pending, newest = self.table.drop_oldest(count, before)
        self.pending = self.table.pending
        self.evicted[reason] += pending
        if newest >= 0 and self.dropped_until is not None:
            self.dropped_until = max(self.dropped_until, newest)
