# Types for the compiled build of ingest.py (Cython reads this file beside
# the .py; the interpreter never sees it). Only what the hot loops touch is
# typed, and only as what it always is: typed dicts and lists turn method
# calls such as `d.get(k)` into direct C API calls, typed numbers stay C.
import cython

@cython.locals(resolved=dict, kind_index=dict, valid=list, event=dict)
cpdef list validate(list raw_events, object now, object kinds, dict rejected, object summary)

@cython.locals(
    events=dict, duplicates=dict, decided=dict, unmatched=dict, since=dict,
    to_delivery=dict, by_kind=dict, bounds=tuple, recipient=str,
    verdict=cython.double, duplicate=cython.double, no_match=cython.double,
    bound=cython.double, accepted=cython.Py_ssize_t, repeated=cython.Py_ssize_t,
    position=cython.Py_ssize_t, sign=cython.Py_ssize_t, i=cython.Py_ssize_t,
)
cpdef count(object metrics, object domains, list valid, list verdicts, object summary)

@cython.locals(counts=list)
cdef inline _observe(object hist, Py_ssize_t i, double value, object exemplar)
