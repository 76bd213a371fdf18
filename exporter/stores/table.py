# cython: boundscheck=False, wraparound=False
"""The record table: `timing.decide` applied to every message's record, fast.

`timing.decide` is the readable statement of the rules; this is their one
fast version, held to it by a differential test (tests/test_table.py). It runs
as Python, or compiled by Cython from this very file, typed by `table.pxd`
beside it, where the install found a C compiler (see exporter/native.py).

Records live in one open-addressing array of three 64-bit words per slot
(linear probing, deletion by backward shift), so that a lookup touches one
cache line instead of a dict entry and two int objects scattered over the
heap; with a million messages that difference is most of a webhook's time,
and a record costs 24 bytes (at most 70% of the slots are used) instead of
about 140. A ring of keys keeps creation order, for expiry and capacity
eviction oldest first.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Sequence
from typing import Final

from exporter.events import KNOWN_KINDS
from exporter.timing import (
    DUPLICATE,
    NOTHING,
    ONCE_BITS,
    REGISTRATION_BIT,
    TERMINAL_BITS,
    UNMATCHED,
    Claim,
    Verdict,
    message_key,
)

# A slot's words: the key (as unsigned 64 bits); the registration time in
# milliseconds plus one (0: none seen); the creation second shifted left by 32
# over the kinds seen (bit i: an event of KNOWN_KINDS[i]) and a bit that says
# the slot is in use (a key may be 0, a creation second too).
_WORDS: Final = 3
_LIVE: Final = 1 << 31
_SEEN: Final = (1 << 31) - 1
assert len(KNOWN_KINDS) < 31
_LOW32: Final = (1 << 32) - 1
_U64: Final = (1 << 64) - 1
# As typed constants of the compiled build (see table.pxd).
_ONCE_BITS: Final = ONCE_BITS
_REGISTRATION_BIT: Final = REGISTRATION_BIT
_TERMINAL_BITS: Final = TERMINAL_BITS
_MIN_CAPACITY: Final = 1024
# Grown (doubled) past this share of slots in use, so probes stay short: at
# 0.7 a linear probe's expected length for a hit is under 2.2 slots.
_MAX_LOAD: Final = 0.7

# A record as one int, for loading into and reading out of the table (never
# on the hot path): bits 0-31 the kinds seen, 32-79 the registration
# milliseconds plus one, 80 and up the creation second.
_MASK_BITS: Final = 32
_REG_FIELD: Final = (1 << 48) - 1
_CREATED_SHIFT: Final = 80

# One record as a durable store logs it: key, registration milliseconds + 1
# (0: none), creation second and kinds seen; little-endian, 24 bytes.
ROW: Final = struct.Struct("<QQII")


def fields(value: int) -> tuple[int, int, int]:
    """A packed record's creation second, registration milliseconds + 1 and kinds seen."""
    return value >> _CREATED_SHIFT, value >> _MASK_BITS & _REG_FIELD, value & _LOW32


def packed(created: int, registered: int, seen: int) -> int:
    return created << _CREATED_SHIFT | registered << _MASK_BITS | seen


def _home(key: int, mask: int) -> int:
    # Keys are digests (XXH3 from a durable store, SipHash from Python's
    # hash() here), uniform in every bit: the low bits are a slot number as
    # good as any mix of them.
    return key & mask


class RecordTable:
    """Every message's record, in creation order."""

    def __init__(self) -> None:
        self._slots = array("Q", [0]) * (_MIN_CAPACITY * _WORDS)
        self._ring = array("Q", [0]) * _MIN_CAPACITY
        self._mask = _MIN_CAPACITY - 1
        # Keys in creation order: _ring[(_head + i) & _mask] for i < _count.
        self._head = 0
        self._count = 0
        self.pending = 0
        # The keys of the batch being applied, and where `_hash_and_touch`
        # leaves what it read (see there).
        self._batch = array("Q", [0]) * 128
        self._sink = 0

    def __len__(self) -> int:
        return self._count

    def apply(
        self,
        claims: Sequence[Claim],
        now: float,
        keys: Sequence[int] | None = None,
        touched: bytearray | None = None,
    ) -> list[Verdict]:
        """`decide` for each claim in order, on the records; the verdicts.

        A claim whose index is NO_CLAIM gets NOTHING and changes nothing.
        `keys` gives each claim's key, 64 bits unsigned (a durable store needs
        keys that survive a restart: `message_keys`); without them a key is
        Python's hash() of the message id and the recipient, which lasts as
        long as the process.
        `touched` collects each record written as a ROW, for a durable store
        to log.
        """
        self._hash_and_touch(claims, keys)
        batch = self._batch
        verdicts: list[Verdict] = []
        nothing, duplicate, unmatched = NOTHING, DUPLICATE, UNMATCHED
        slots = self._slots
        for c in range(len(claims)):
            claim = claims[c]
            index = claim[2]
            if index < 0:
                verdicts.append(nothing)
                continue
            unsigned = batch[c]
            at = claim[3]
            bit = 1 << index
            i = self._find(unsigned)
            word = slots[i + 2]
            if word:
                seen = word & _SEEN
                if seen & bit and bit & _ONCE_BITS:
                    verdicts.append(duplicate)
                    continue
                registered = slots[i + 1]
            else:
                seen = 0
                registered = 0
                if self._count + 1 > _MAX_LOAD * (self._mask + 1):
                    self._grow()
                    i = self._find(unsigned)
                    slots = self._slots
                self._insert(i, unsigned, int(now))
                word = slots[i + 2]
            if bit == _REGISTRATION_BIT:
                if seen == 0:
                    # In two steps: compiled, only int() makes a Python int.
                    registered = int(at * 1000)
                    registered += 1
                    self.pending += 1
                verdicts.append(nothing)
            elif seen & bit:
                verdicts.append(nothing)
            elif registered == 0:
                verdicts.append(unmatched)
            else:
                elapsed = at - (registered - 1) / 1000
                verdicts.append(elapsed if elapsed >= 0 else nothing)
                if bit & _TERMINAL_BITS and not seen & _TERMINAL_BITS:
                    self.pending -= 1
            slots[i + 1] = registered
            slots[i + 2] = word | bit
            if touched is not None:
                touched += ROW.pack(unsigned, registered, word >> 32, seen | bit)
        return verdicts

    def _hash_and_touch(self, claims: Sequence[Claim], keys: Sequence[int] | None) -> None:
        """Put each claim's key in `_batch`, and read its home slot.

        With a million records the slots are far larger than the CPU's
        cache, and each lookup would wait for memory in turn. Read in a loop
        of their own, with nothing else to wait for, the batch's slots are
        fetched from memory together (about ten at a time), and `apply` then
        finds them in the cache. What is read is kept in `_sink` only so
        that the compiler cannot drop the reads.
        """
        if len(self._batch) < len(claims):
            self._batch = array("Q", [0]) * len(claims)
        batch = self._batch
        slots = self._slots
        mask = self._mask
        sink = self._sink
        for c in range(len(claims)):
            claim = claims[c]
            if claim[2] < 0:
                # Never looked up; the read below of key 0's home is harmless.
                unsigned = 0
            elif keys is None:
                # Not `message_key`: the memory store's keys never leave the
                # process, and XXH3 of the two joined cost 0.15 us per event,
                # nearly doubling the store's time (0.21 us); Python's hash,
                # SipHash keyed per process, costs 0.02 us and keeps anyone
                # from choosing messages that crowd one run of slots.
                unsigned = hash((claim[0], claim[1])) & _U64
            else:
                unsigned = keys[c]
            batch[c] = unsigned
        for c in range(len(claims)):
            sink ^= slots[_home(batch[c], mask) * _WORDS]
        self._sink = sink

    def load(self, records: Iterable[tuple[int, int]]) -> None:
        """Add (key, packed record) pairs, oldest first, from a durable store;
        a later pair of a key replaces its record, keeping its place."""
        for unsigned, value in records:
            created, registered, seen = fields(value)
            i = self._find(unsigned)
            if self._slots[i + 2]:
                if self._is_pending(i):
                    self.pending -= 1
            else:
                if self._count + 1 > _MAX_LOAD * (self._mask + 1):
                    self._grow()
                    i = self._find(unsigned)
                self._insert(i, unsigned, created)
            self._slots[i + 1] = registered
            self._slots[i + 2] = created << 32 | _LIVE | seen & _SEEN
            if self._is_pending(i):
                self.pending += 1

    def items(self) -> list[tuple[int, int]]:
        """(key, packed record) of every record, oldest first."""
        out = []
        for n in range(self._count):
            unsigned = self._ring[(self._head + n) & self._mask]
            i = self._find(unsigned)
            word = self._slots[i + 2]
            out.append((unsigned, packed(word >> 32, self._slots[i + 1], word & _SEEN)))
        return out

    def drop_oldest(self, count: int, before: float | None = None) -> tuple[int, int]:
        """Remove up to `count` oldest records, stopping at the first created
        at or after `before` (when given). Returns the number of pending
        messages removed and the creation second of the newest record
        removed (-1: none)."""
        pending = 0
        newest = -1
        removed = 0
        while removed < count and self._count > 0:
            i = self._find(self._ring[self._head])
            created = self._slots[i + 2] >> 32
            if before is not None and created >= before:
                break
            if self._is_pending(i):
                pending += 1
            newest = created
            self._remove(i)
            self._head = (self._head + 1) & self._mask
            self._count -= 1
            removed += 1
        self.pending -= pending
        return pending, newest

    # --- the hash table ---------------------------------------------------

    def _find(self, unsigned: int) -> int:
        """The first word of the slot holding `unsigned`, or of the free slot
        where it would go."""
        mask = self._mask
        i = _home(unsigned, mask)
        while self._slots[i * _WORDS + 2] and self._slots[i * _WORDS] != unsigned:
            i = (i + 1) & mask
        return i * _WORDS

    def _is_pending(self, i: int) -> bool:
        return bool(self._slots[i + 1]) and not self._slots[i + 2] & _TERMINAL_BITS

    def _insert(self, i: int, unsigned: int, created: int) -> None:
        """Take free slot i (from `_find`) for a new record, newest in creation order."""
        self._slots[i] = unsigned
        self._slots[i + 1] = 0
        self._slots[i + 2] = created << 32 | _LIVE
        self._ring[(self._head + self._count) & self._mask] = unsigned
        self._count += 1

    def _remove(self, i: int) -> None:
        """Free slot i, shifting later members of its probe run back (no tombstones)."""
        slots = self._slots
        mask = self._mask
        hole = i // _WORDS
        j = hole
        while True:
            slots[hole * _WORDS + 2] = 0
            while True:
                j = (j + 1) & mask
                if not slots[j * _WORDS + 2]:
                    return
                home = _home(slots[j * _WORDS], mask)
                # Slot j may move to the hole unless its home lies cyclically
                # in (hole, j].
                if (hole <= j and (home <= hole or home > j)) or (
                    hole > j and home <= hole and home > j
                ):
                    break
            for w in range(_WORDS):
                slots[hole * _WORDS + w] = slots[j * _WORDS + w]
            hole = j

    def _grow(self) -> None:
        """Double the slots and the ring, keeping every record and the order."""
        old_slots, old_ring, old_mask = self._slots, self._ring, self._mask
        capacity = (old_mask + 1) * 2
        self._slots = array("Q", [0]) * (capacity * _WORDS)
        self._ring = array("Q", [0]) * capacity
        self._mask = capacity - 1
        slots, ring = self._slots, self._ring
        for n in range(self._count):
            ring[n] = old_ring[(self._head + n) & old_mask]
        self._head = 0
        for n in range(len(old_slots) // _WORDS):
            s = n * _WORDS
            if old_slots[s + 2]:
                i = self._find(old_slots[s])
                for w in range(_WORDS):
                    slots[i + w] = old_slots[s + w]


def message_keys(claims: Sequence[Claim]) -> list[int]:
    """Each claim's `timing.message_key` (0 for NO_CLAIM): the keys a durable
    store keeps records under."""
    return [message_key(claim) if claim[2] >= 0 else 0 for claim in claims]
