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
    Record,
    Verdict,
)

# A record is packed into one int so that a pending message costs about 120
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


def pack(record: Record) -> int:
    registered = 0 if record.registered_at is None else int(record.registered_at * 1000) + 1
    return record.seen | registered << _MASK_BITS | int(record.created) << _CREATED_SHIFT


def unpack(value: int) -> Record:
    registered = value >> _MASK_BITS & _REG_FIELD
    return Record(
        created=float(value >> _CREATED_SHIFT),
        registered_at=None if registered == 0 else (registered - 1) / 1000,
        seen=value & _SEEN_FIELD,
    )


def _is_pending(value: int) -> bool:
    return bool(value >> _MASK_BITS & _REG_FIELD) and not value & TERMINAL_BITS


class MemoryStore(StateStore):
    def __init__(self, ttl: float, max_entries: int, timeout: float = 1.0) -> None:
        super().__init__(ttl, max_entries, timeout)
        # Insertion order is creation order, so the oldest entries are first.
        self._records: dict[int, int] = {}
        self._bodies: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._records)

    async def apply(self, body_key: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        bodies = self._bodies
        if body_key in bodies:
            return Outcome(body_seen=True)
        bodies[body_key] = now
        verdicts = self._apply(claims, now)
        if len(self._records) > self.max_entries or len(bodies) > self.max_entries:
            self._evict_capacity()
        return Outcome(body_seen=False, verdicts=verdicts)

    def _apply(self, claims: Sequence[Claim], now: float) -> list[Verdict]:
        """`decide` on packed records, inlined: this runs for every event.

        tests/test_memory_store.py holds it to `decide` on random event streams.
        """
        records = self._records
        get = records.get
        created = int(now) << _CREATED_SHIFT
        verdicts: list[Verdict] = []
        append = verdicts.append
        pending = self.pending
        for message_id, recipient, index, at in claims:
            key = hash((message_id, recipient))
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
            records[key] = base | registered << _MASK_BITS | seen | bit
        self.pending = pending
        return verdicts

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
        for key in keys:
            if _is_pending(records.pop(key)):
                self.pending -= 1
                self.evicted[reason] += 1
