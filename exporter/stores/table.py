"""The record table: every message's record, decided on with `timing.decide`'s rules.

`table_class()` is the compiled table from `_table.pyx` when the package was
built with it (the normal install), else `PureRecordTable` below. Both have the
same interface; the tests run against both and hold both to `decide`.
CLOUDMAILIN_PURE_PYTHON=1 picks the pure one (see `exporter.native`).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, TypeVar, cast

from exporter.native import compiled
from exporter.stores.base import body_digest
from exporter.timing import (
    DUPLICATE,
    NOTHING,
    ONCE_BITS,
    REGISTRATION_BIT,
    TERMINAL_BITS,
    UNMATCHED,
    Claim,
    Verdict,
    message_digest,
)

# A record is packed into one int so that a pending message costs about 140
# bytes (the dict slot, an int key and this int) instead of an object with
# two floats: bits 0-31 the kinds seen, 32-79 the registration time in
# milliseconds plus one (0: not seen), 80 and up the creation second. The
# SQLite store keeps records in this form too.
_MASK_BITS: Final = 32
_REG_BITS: Final = 48
_REG_FIELD: Final = (1 << _REG_BITS) - 1
_SEEN_FIELD: Final = (1 << _MASK_BITS) - 1
_CREATED_SHIFT: Final = _MASK_BITS + _REG_BITS


# One record as a durable store logs it: key, registration milliseconds + 1
# (0: none), creation second and kinds seen; little-endian, 24 bytes, the
# compiled table's slot exactly.
ROW: Final = struct.Struct("<qqII")


def fields(value: int) -> tuple[int, int, int]:
    """A packed record's creation second, registration milliseconds + 1 and kinds seen."""
    return value >> _CREATED_SHIFT, value >> _MASK_BITS & _REG_FIELD, value & _SEEN_FIELD


def packed(created: int, registered: int, seen: int) -> int:
    return created << _CREATED_SHIFT | registered << _MASK_BITS | seen


def _is_pending(value: int) -> bool:
    return bool(value >> _MASK_BITS & _REG_FIELD) and not value & TERMINAL_BITS


class PureRecordTable:
    """Records in a dict of packed ints; insertion order is creation order."""

    def __init__(self) -> None:
        self._records: dict[int, int] = {}
        self.pending = 0

    def __len__(self) -> int:
        return len(self._records)

    def apply(
        self,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None = None,
        touched: bytearray | None = None,
    ) -> list[Verdict]:
        """`decide` for each claim in order, on packed records, inlined: this
        runs for every event. `keys` replaces the process-local key of each
        claim (a durable store needs keys that survive a restart); `touched`
        collects each record written as a ROW, for a durable store to persist.
        """
        records = self._records
        get = records.get
        created = int(now) << _CREATED_SHIFT
        verdicts: list[Verdict] = []
        append = verdicts.append
        pending = self.pending
        if keys is None:
            keys = [hash((claim[0], claim[1])) for claim in claims]
        for key, (_, _, index, at, _) in zip(keys, claims, strict=True):
            if index < 0:
                append(NOTHING)
                continue
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
            if touched is not None:
                touched += ROW.pack(key, registered, base >> _CREATED_SHIFT, seen | bit)
        self.pending = pending
        return verdicts

    def load(self, records: Iterable[tuple[int, int]]) -> None:
        """Add (key, packed record) pairs, oldest first, from a durable store."""
        table = self._records
        for key, value in records:
            old = table.get(key)
            if old is not None and _is_pending(old):
                self.pending -= 1
            table[key] = value
            if _is_pending(value):
                self.pending += 1

    def items(self) -> list[tuple[int, int]]:
        """(key, packed record) of every record, oldest first."""
        return list(self._records.items())

    def drop_oldest(self, count: int, before: float | None = None) -> tuple[int, int]:
        """Remove up to `count` oldest records, stopping at the first created
        at or after `before` (when given). Returns the number of pending
        messages removed and the creation second of the newest record
        removed (-1: none)."""
        records = self._records
        victims: list[int] = []
        newest = -1
        for key, value in records.items():
            if len(victims) >= count:
                break
            created = value >> _CREATED_SHIFT
            if before is not None and created >= before:
                break
            victims.append(key)
            newest = created
        pending = 0
        for key in victims:
            if _is_pending(records.pop(key)):
                pending += 1
        self.pending -= pending
        return pending, newest


class Table(Protocol):
    """What both tables offer (PureRecordTable's docstrings say what each does)."""

    pending: int

    def __len__(self) -> int: ...
    def apply(
        self,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None = ...,
        touched: bytearray | None = ...,
    ) -> list[Verdict]: ...
    def load(self, records: Iterable[tuple[int, int]]) -> None: ...
    def items(self) -> list[tuple[int, int]]: ...
    def drop_oldest(self, count: int, before: float | None = ...) -> tuple[int, int]: ...


def pure_message_keys(claims: Sequence[Claim]) -> list[int]:
    """Each claim's stable key (0 for NO_CLAIM): `message_digest` as a signed
    64-bit integer, the key the SQLite store keeps records under."""
    return [
        int.from_bytes(message_digest(claim), "big", signed=True) if claim[2] >= 0 else 0
        for claim in claims
    ]


T = TypeVar("T")


def _compiled_or(name: str, pure: T) -> T:
    """`name` from the compiled module when it is built and wanted, else `pure`."""
    if compiled("exporter.stores._table"):
        try:
            module = importlib.import_module("exporter.stores._table")
        except ImportError:
            return pure
        return cast("T", getattr(module, name))
    return pure


def table_class() -> Callable[[], Table]:
    return _compiled_or("RecordTable", PureRecordTable)


def message_keys_function() -> Callable[[Sequence[Claim]], list[int]]:
    return _compiled_or("message_keys", pure_message_keys)


def body_digest_function() -> Callable[[bytes], bytes]:
    return _compiled_or("body_digest", body_digest)
