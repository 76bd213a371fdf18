# Types for the compiled build of table.py (Cython reads this file beside the
# .py; the interpreter never sees it). The slots become C arrays of 64-bit
# words and the hot loop's numbers C numbers; each type is what the value
# always is, so the compiled table behaves exactly as the Python one.
import cython

cdef Py_ssize_t _WORDS
cdef unsigned long long _LIVE, _SEEN, _LOW32, _U64
cdef unsigned long long _ONCE_BITS, _REGISTRATION_BIT, _TERMINAL_BITS
cdef double _MAX_LOAD

cdef Py_ssize_t _home(unsigned long long key, Py_ssize_t mask) noexcept


cdef class RecordTable:
    cdef unsigned long long[::1] _slots
    cdef unsigned long long[::1] _ring
    cdef unsigned long long[::1] _batch
    cdef unsigned long long _sink
    cdef Py_ssize_t _mask, _head, _count
    cdef public Py_ssize_t pending

    @cython.locals(
        verdicts=list, claim=tuple, c=Py_ssize_t, index=Py_ssize_t, i=Py_ssize_t,
        unsigned=cython.ulonglong,
        bit=cython.ulonglong, seen=cython.ulonglong, registered=cython.ulonglong,
        word=cython.ulonglong, at=cython.double, elapsed=cython.double,
        slots=cython.ulonglong[::1], batch=cython.ulonglong[::1],
    )
    cpdef list apply(self, object claims, double now, object keys=*, bytearray touched=*)

    @cython.locals(
        claim=tuple, c=Py_ssize_t, unsigned=cython.ulonglong, sink=cython.ulonglong,
        slots=cython.ulonglong[::1], batch=cython.ulonglong[::1], mask=Py_ssize_t,
    )
    cdef int _hash_and_touch(self, object claims, object keys) except -1

    @cython.locals(i=Py_ssize_t, mask=Py_ssize_t)
    cdef inline Py_ssize_t _find(self, unsigned long long unsigned) noexcept

    cdef inline bint _is_pending(self, Py_ssize_t i) noexcept

    cdef inline void _insert(
        self, Py_ssize_t i, unsigned long long unsigned, unsigned long long created
    ) noexcept

    @cython.locals(
        slots=cython.ulonglong[::1], hole=Py_ssize_t, j=Py_ssize_t, home=Py_ssize_t,
        w=Py_ssize_t,
    )
    cdef void _remove(self, Py_ssize_t i)

    @cython.locals(
        old_slots=cython.ulonglong[::1], old_ring=cython.ulonglong[::1],
        slots=cython.ulonglong[::1], ring=cython.ulonglong[::1], old_mask=Py_ssize_t,
        capacity=Py_ssize_t, n=Py_ssize_t, s=Py_ssize_t, i=Py_ssize_t, w=Py_ssize_t,
    )
    cdef int _grow(self) except -1
