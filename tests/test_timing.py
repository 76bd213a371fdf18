"""`decide`: what one event means for its message's record."""

from __future__ import annotations

from exporter.events import KIND_INDEX, KNOWN_KINDS, ONCE_PER_MESSAGE
from exporter.stores.table import fields, packed
from exporter.timing import DUPLICATE, NOTHING, Claim, Record, decide


def claim(kind: str, at: float) -> Claim:
    return ("m", "r@x.example", KIND_INDEX[kind], at, kind)


def test_every_once_per_message_kind_is_a_duplicate_the_second_time() -> None:
    for kind in ONCE_PER_MESSAGE:
        record = Record(created=0)
        assert decide(record, claim(kind, 1)) != DUPLICATE
        assert decide(record, claim(kind, 2)) == DUPLICATE


def test_other_kinds_never_are() -> None:
    for kind in set(KNOWN_KINDS) - ONCE_PER_MESSAGE:
        record = Record(created=0, registered_at=0)
        first = decide(record, claim(kind, 5))
        second = decide(record, claim(kind, 6))
        assert first == 5
        assert second == NOTHING


def test_pending_until_terminal() -> None:
    record = Record(created=0)
    decide(record, claim("registration", 10))
    assert record.pending
    decide(record, claim("soft_bounce", 20))
    assert record.pending
    decide(record, claim("retries_exhausted", 30))
    assert not record.pending


def test_negative_interval_is_not_observed() -> None:
    record = Record(created=0)
    decide(record, claim("registration", 100))
    verdict = decide(record, claim("delivery", 50))
    assert verdict == NOTHING


def test_memory_packing_round_trips() -> None:
    for created, registered, seen in (
        (1_800_000_000, 1_800_000_000_123 + 1, (1 << 19) | 5),
        (0, 0, 0),
        (4_000_000_000, 1, (1 << 32) - 1),
    ):
        assert fields(packed(created, registered, seen)) == (created, registered, seen)
