"""The in-process store: fastest, lost on restart, one replica only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from exporter.stores.base import Outcome, StateStore
from exporter.timing import (
    DUPLICATE,
    NOTHING,
    ONCE_BITS,
    REGISTRATION_BIT,
    TERMINAL_BITS,
    UNMATCHED,
    Claim,
    Verdict,
)

# A record is packed into one int so that a pending message costs about 140
# bytes (the dict slot, an int key and this int) instead of an object with
# two floats: bits 0-31 the kinds seen, 32-79 the registration time in
# milliseconds plus one (0: not seen), 80 and up the creation second.
_MASK_BITS: Final = 32
_REG_BITS: Final = 48
_REG_FIELD: Final = (1 << _REG_BITS) - 1
_SEEN_FIELD: Final = (1 << _MASK_BITS) - 1
_CREATED_SHIFT: Final = _MASK_BITS + _REG_BITS
# Capacity evictions remove 1% more than needed so that a full store does not
# walk to its oldest entry again on every new message.
_EVICTION_SLACK: Final = 0.01


def fields(value: int) -> tuple[int, int, int]:
    """A packed record's creation second, registration milliseconds + 1 and kinds seen."""
    return value >> _CREATED_SHIFT, value >> _MASK_BITS & _REG_FIELD, value & _SEEN_FIELD


def packed(created: int, registered: int, seen: int) -> int:
    return created << _CREATED_SHIFT | registered << _MASK_BITS | seen


def _is_pending(value: int) -> bool:
    return bool(value >> _MASK_BITS & _REG_FIELD) and not value & TERMINAL_BITS


class MemoryStore(StateStore):
    def __init__(self, ttl: float, max_entries: int, timeout: float = 1.0) -> None:
        super().__init__(ttl, max_entries, timeout)
        # Insertion order is creation order, so the oldest entries are first.
        self._records: dict[int, int] = {}
        self._bodies: dict[bytes, float] = {}
        # When a durable store keeps this one as its cache, it collects the
        # creation seconds of records dropped here, to drop them on disk too.
        self.dropped: list[int] | None = None

    def __len__(self) -> int:
        return len(self._records)

    async def apply(self, body_key: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        return self.apply_now(body_key, claims, now)

    def apply_now(
        self,
        body_key: bytes,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None = None,
        touched: dict[int, int] | None = None,
    ) -> Outcome:
        """`apply`, synchronously, for this store and for a durable store that keeps it.

        `keys` replaces the process-local key of each claim (a durable store
        needs keys that survive a restart); `touched` collects the records
        written, for a durable store to persist.
        """
        bodies = self._bodies
        if body_key in bodies:
            return Outcome(body_seen=True)
        bodies[body_key] = now
        verdicts = self._apply(claims, now, keys, touched)
        if len(self._records) > self.max_entries or len(bodies) > self.max_entries:
            self._evict_capacity()
        return Outcome(body_seen=False, verdicts=verdicts)

    def _apply(
        self,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None,
        touched: dict[int, int] | None,
    ) -> list[Verdict]:
        """`decide` on packed records, inlined: this runs for every event.

        tests/test_fast_paths.py holds it to `decide` on random event streams.
        """
        records = self._records
        get = records.get
        created = int(now) << _CREATED_SHIFT
        verdicts: list[Verdict] = []
        append = verdicts.append
        pending = self.pending
        if keys is None:
            keys = [hash((message_id, recipient)) for message_id, recipient, _, _ in claims]
        for key, (_, _, index, at) in zip(keys, claims, strict=True):
            value = get(key)
            bit = 1 << index
            if value is None:
                seen = 0
                registered = 0
                base = created
            else:
                seen = value & _SEEN_FIELD
                if seen & bit and bit & ONCE_BITS:
                    append(DUPLICATE)
                    continue
                registered = value >> _MASK_BITS & _REG_FIELD
                base = value >> _CREATED_SHIFT << _CREATED_SHIFT
            if bit == REGISTRATION_BIT:
                if seen == 0:
                    registered = int(at * 1000) + 1
                    pending += 1
                append(NOTHING)
            elif seen & bit:
                append(NOTHING)
            elif registered == 0:
                append(UNMATCHED)
            else:
                elapsed = at - (registered - 1) / 1000
                append(elapsed if elapsed >= 0 else NOTHING)
                if bit & TERMINAL_BITS and not seen & TERMINAL_BITS:
                    pending -= 1
            value = base | registered << _MASK_BITS | seen | bit
            records[key] = value
            if touched is not None:
                touched[key] = value
        self.pending = pending
        return verdicts

    def load(
        self, records: Sequence[tuple[int, int]], bodies: Sequence[tuple[bytes, float]]
    ) -> None:
        """Fill an empty store, oldest first, from what a durable store kept."""
        self._records.update(records)
        self._bodies.update(bodies)
        self.pending = sum(1 for _, value in records if _is_pending(value))

    async def maintain(self, now: float) -> None:
        cutoff = now - self.ttl
        expired = []
        for key, value in self._records.items():
            if value >> _CREATED_SHIFT >= cutoff:
                break
            expired.append(key)
        self._drop(expired, "expired")
        old_bodies = []
        for body, seen in self._bodies.items():
            if seen >= cutoff:
                break
            old_bodies.append(body)
        for body in old_bodies:
            del self._bodies[body]

    def _evict_capacity(self) -> None:
        target = int(self.max_entries * (1 - _EVICTION_SLACK))
        excess = len(self._records) - target
        if excess > 0:
            victims: list[int] = []
            for key in self._records:
                if len(victims) >= excess:
                    break
                victims.append(key)
            self._drop(victims, "capacity")
        excess = len(self._bodies) - target
        if excess > 0:
            for body in list(self._bodies)[:excess]:
                del self._bodies[body]

    def _drop(self, keys: list[int], reason: str) -> None:
        records = self._records
        dropped = self.dropped
        for key in keys:
            value = records.pop(key)
            if dropped is not None:
                dropped.append(value >> _CREATED_SHIFT)
            if _is_pending(value):
                self.pending -= 1
                self.evicted[reason] += 1
