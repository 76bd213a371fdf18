# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The record table in C: the compiled twin of `exporter.stores.table.RecordTable`.

Same interface and the same rules (`timing.decide` on packed records); the
tests run every store test against both and hold both to `decide`.

Records live in one open-addressing array of 24-byte slots (linear probing,
deletion by backward shift; key 0 marks an empty slot, so a record whose key
is 0 has one extra slot of its own at the end), so a lookup touches one cache line instead of a
dict entry and two int objects scattered over the heap; with a million
messages that difference is most of a webhook's time. A ring of keys keeps
creation order, for expiry and capacity eviction oldest first.
"""

from cpython.dict cimport PyDict_SetItem
from cpython.object cimport PyObject_Hash
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from exporter.timing import (
    DUPLICATE as _DUPLICATE,
    NOTHING as _NOTHING,
    ONCE_BITS as _ONCE_BITS,
    REGISTRATION_BIT as _REGISTRATION_BIT,
    TERMINAL_BITS as _TERMINAL_BITS,
    UNMATCHED as _UNMATCHED,
)

cdef double DUPLICATE = _DUPLICATE
cdef double NOTHING = _NOTHING
cdef double UNMATCHED = _UNMATCHED
cdef uint32_t ONCE_BITS = _ONCE_BITS
cdef uint32_t REGISTRATION_BIT = _REGISTRATION_BIT
cdef uint32_t TERMINAL_BITS = _TERMINAL_BITS

# The packed form shared with the pure table and the SQLite store: bits 0-31
# the kinds seen, 32-79 registration milliseconds + 1, 80 and up creation second.
cdef enum:
    MASK_BITS = 32
    CREATED_SHIFT = 80
    MIN_CAPACITY = 1024
# Grown (doubled) past this load, so probes stay short: at 0.7 a linear
# probe's expected length for a hit is under 2.2 slots.
cdef double MAX_LOAD = 0.7


cdef struct Slot:
    uint64_t key  # 0: empty, except in the extra slot kept for key 0
    uint64_t registered  # milliseconds + 1; 0: no registration seen
    uint32_t created  # Unix second (uint32 lasts until 2106)
    uint32_t seen  # bit i: an event of KNOWN_KINDS[i] was seen


cdef inline uint64_t mix(uint64_t x) noexcept nogil:
    # splitmix64's finaliser: spreads any key over the slots.
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef inline uint64_t stored(object key):
    """A Python int key (signed or not, 64 bits) as the table's key."""
    if key < 0:
        return <uint64_t>(<int64_t>key)
    return <uint64_t>key


cdef class RecordTable:
    cdef Slot* slots
    cdef size_t mask
    cdef size_t count
    # Keys in creation order: ring[(head + i) % ring_size] for i < count.
    cdef uint64_t* ring
    cdef size_t ring_size
    cdef size_t head
    # Whether the extra slot (index mask + 1) holds the record of key 0.
    cdef bint zero_used
    cdef public Py_ssize_t pending

    def __cinit__(self):
        self.slots = <Slot*>calloc(MIN_CAPACITY + 1, sizeof(Slot))
        self.ring = <uint64_t*>malloc(MIN_CAPACITY * sizeof(uint64_t))
        if self.slots == NULL or self.ring == NULL:
            raise MemoryError()
        self.mask = MIN_CAPACITY - 1
        self.ring_size = MIN_CAPACITY
        self.count = 0
        self.head = 0
        self.zero_used = False
        self.pending = 0

    def __dealloc__(self):
        free(self.slots)
        free(self.ring)

    def __len__(self):
        return self.count

    # --- the hash table ------------------------------------------------------

    cdef inline size_t find(self, uint64_t key) noexcept nogil:
        """The slot holding `key`, or the empty slot where it would go."""
        if key == 0:
            return self.mask + 1
        cdef size_t i = mix(key) & self.mask
        while self.slots[i].key != 0 and self.slots[i].key != key:
            i = (i + 1) & self.mask
        return i

    cdef int grow(self) except -1:
        cdef size_t old_capacity = self.mask + 1
        cdef size_t capacity = old_capacity * 2
        cdef Slot* old = self.slots
        cdef Slot* slots = <Slot*>calloc(capacity + 1, sizeof(Slot))
        cdef uint64_t* ring = <uint64_t*>malloc(capacity * sizeof(uint64_t))
        cdef size_t i, j
        if slots == NULL or ring == NULL:
            free(slots)
            free(ring)
            raise MemoryError()
        for i in range(self.count):
            ring[i] = self.ring[(self.head + i) % self.ring_size]
        free(self.ring)
        self.ring = ring
        self.ring_size = capacity
        self.head = 0
        self.slots = slots
        self.mask = capacity - 1
        for i in range(old_capacity):
            if old[i].key != 0:
                j = self.find(old[i].key)
                self.slots[j] = old[i]
        self.slots[capacity] = old[old_capacity]
        free(old)
        return 0

    cdef inline void remove(self, size_t i) noexcept nogil:
        """Empty slot i, shifting later members of its probe run back (no tombstones)."""
        cdef size_t j = i
        cdef size_t home
        if i == self.mask + 1:
            self.zero_used = False
            return
        while True:
            self.slots[i].key = 0
            while True:
                j = (j + 1) & self.mask
                if self.slots[j].key == 0:
                    return
                home = mix(self.slots[j].key) & self.mask
                # Slot j may move to i unless its home lies cyclically in (i, j].
                if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
                    break
            self.slots[i] = self.slots[j]
            i = j

    cdef int insert(self, size_t i, uint64_t key, uint32_t created) except -1:
        """Claim empty slot i (from `find`) for `key`, newest in creation order."""
        if i == self.mask + 1:
            self.zero_used = True
        self.slots[i].key = key
        self.slots[i].registered = 0
        self.slots[i].created = created
        self.slots[i].seen = 0
        self.ring[(self.head + self.count) % self.ring_size] = key
        self.count += 1
        return 0

    # --- the interface -----------------------------------------------------

    def apply(self, claims, double now, keys=None, dict touched=None):
        """`decide` for each claim in order; the verdicts (see exporter.timing).
        A claim whose index is negative (NO_CLAIM) gets NOTHING and changes nothing."""
        cdef list verdicts = []
        cdef Py_ssize_t n = len(claims)
        cdef Py_ssize_t c
        cdef uint64_t key
        cdef uint32_t bit, seen
        cdef uint64_t registered
        cdef uint32_t created = <uint32_t>now
        cdef size_t i
        cdef double at, elapsed, verdict
        cdef tuple claim
        cdef int index
        cdef bint new
        for c in range(n):
            claim = claims[c]
            index = claim[2]
            if index < 0:
                verdicts.append(NOTHING)
                continue
            if keys is None:
                key = mix(<uint64_t>PyObject_Hash(claim[0]) * 0x9E3779B97F4A7C15ULL
                          ^ <uint64_t>PyObject_Hash(claim[1]))
            else:
                key = stored(keys[c])
            bit = (<uint32_t>1) << index
            at = claim[3]
            i = self.find(key)
            new = not self.occupied(i)
            if new:
                seen = 0
                registered = 0
            else:
                seen = self.slots[i].seen
                if seen & bit and bit & ONCE_BITS:
                    verdicts.append(DUPLICATE)
                    continue
                registered = self.slots[i].registered
            if bit == REGISTRATION_BIT:
                if seen == 0:
                    registered = <uint64_t>(<int64_t>(at * 1000)) + 1
                    self.pending += 1
                verdict = NOTHING
            elif seen & bit:
                verdict = NOTHING
            elif registered == 0:
                verdict = UNMATCHED
            else:
                elapsed = at - (<double>(registered - 1)) / 1000
                verdict = elapsed if elapsed >= 0 else NOTHING
                if bit & TERMINAL_BITS and not seen & TERMINAL_BITS:
                    self.pending -= 1
            verdicts.append(verdict)
            if new:
                if (self.count + 1) > MAX_LOAD * (self.mask + 1):
                    self.grow()
                    i = self.find(key)
                self.insert(i, key, created)
            self.slots[i].registered = registered
            self.slots[i].seen = seen | bit
            if touched is not None:
                PyDict_SetItem(touched, <int64_t>key if keys is None else keys[c], self.packed(i))
        return verdicts

    cdef object packed(self, size_t i):
        return ((<object>self.slots[i].created) << CREATED_SHIFT
                | (<object>self.slots[i].registered) << MASK_BITS
                | self.slots[i].seen)

    def load(self, records):
        """Add (key, packed value) records, oldest first (from a durable store)."""
        cdef size_t i
        cdef uint64_t key
        for k, value in records:
            key = stored(k)
            i = self.find(key)
            if not self.occupied(i):
                if (self.count + 1) > MAX_LOAD * (self.mask + 1):
                    self.grow()
                    i = self.find(key)
                self.insert(i, key, <uint32_t>(value >> CREATED_SHIFT))
            elif self.is_pending(i):
                self.pending -= 1
            self.slots[i].created = <uint32_t>(value >> CREATED_SHIFT)
            self.slots[i].registered = <uint64_t>(value >> MASK_BITS & 0xFFFFFFFFFFFF)
            self.slots[i].seen = <uint32_t>(value & 0xFFFFFFFF)
            if self.is_pending(i):
                self.pending += 1

    cdef inline bint occupied(self, size_t i) noexcept nogil:
        return self.zero_used if i == self.mask + 1 else self.slots[i].key != 0

    cdef inline bint is_pending(self, size_t i) noexcept nogil:
        return self.slots[i].registered != 0 and not self.slots[i].seen & TERMINAL_BITS

    def items(self):
        """(key, packed value) of every record, oldest first."""
        cdef size_t n
        cdef list out = []
        for n in range(self.count):
            i = self.find(self.ring[(self.head + n) % self.ring_size])
            out.append((<int64_t>self.ring[(self.head + n) % self.ring_size], self.packed(i)))
        return out

    def drop_oldest(self, Py_ssize_t count, before=None):
        """Remove up to `count` oldest records, stopping at the first created
        at or after `before` (when given). Returns (pending removed, creation
        second of the newest removed, or -1)."""
        cdef bint bounded = before is not None
        cdef double limit = before if bounded else 0.0
        cdef Py_ssize_t removed = 0, pending = 0
        cdef int64_t newest = -1
        cdef size_t i
        while removed < count and self.count > 0:
            i = self.find(self.ring[self.head])
            if bounded and self.slots[i].created >= limit:
                break
            if self.is_pending(i):
                pending += 1
            newest = self.slots[i].created
            self.remove(i)
            self.head = (self.head + 1) % self.ring_size
            self.count -= 1
            removed += 1
        self.pending -= pending
        return pending, newest
