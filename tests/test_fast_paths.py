"""The hot paths written for speed agree with the readable statements of the rules:
the memory store with `decide`, the ingest loop with `parse_event`."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.registry import CollectorRegistry

from exporter.domains import DomainGuard
from exporter.events import (
    KIND_INDEX,
    KNOWN_KINDS,
    REJECT_REASONS,
    Event,
    KindCatalogue,
    parse_event,
)
from exporter.ingest import Ingest, Summary
from exporter.metrics import ExporterMetrics
from exporter.stores.memory import MemoryStore
from exporter.timing import NO_CLAIM, NOTHING, Claim, Record, Verdict, decide

claims = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3"]),
        st.sampled_from(["a@x.example", "b@y.example"]),
        st.sampled_from([NO_CLAIM, *range(len(KNOWN_KINDS))]),
        # Eighths of a second: exact in binary and in the store's milliseconds.
        st.integers(0, 4000).map(lambda k: 1_000_000 + k / 8),
    ).map(lambda c: (*c, KNOWN_KINDS[c[2]] if c[2] >= 0 else "other")),
    max_size=40,
)


def reference(batches: list[list[Claim]], now: float) -> tuple[list[list[Verdict]], int]:
    records: dict[tuple[str | None, str], Record] = {}
    out = []
    for batch in batches:
        verdicts = []
        for claim in batch:
            if claim[2] == NO_CLAIM:
                verdicts.append(NOTHING)
                continue
            record = records.setdefault((claim[0], claim[1]), Record(created=now))
            verdicts.append(decide(record, claim))
        out.append(verdicts)
    return out, sum(r.pending for r in records.values())


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(claims, max_size=5))
def test_memory_store_applies_decide(batches: list[list[Claim]]) -> None:
    store = MemoryStore(ttl=10_000, max_entries=1000)

    async def run() -> list[list[Verdict]]:
        out = []
        for i, batch in enumerate(batches):
            outcome = await store.apply(i.to_bytes(4, "big"), batch, 1_000_000.0)
            out.append(outcome.verdicts)
        return out

    got = asyncio.run(run())
    expected, pending = reference(batches, 1_000_000.0)
    assert got == expected
    assert store.pending == pending


values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=False),
    st.text(max_size=8), st.sampled_from([*KNOWN_KINDS, "rate_limited", "new_kind", "Bad", ""]),
    st.just("2026-11-27T10:00:00Z"), st.lists(st.integers(), max_size=2),
)  # fmt: skip
events = st.one_of(
    values,
    st.dictionaries(
        st.sampled_from(["kind", "recipient", "message_id", "timestamp", "created_at", "x"]),
        values | st.sampled_from(["a@b.example", "m-1"]),
        max_size=6,
    ),
)


@settings(max_examples=300, deadline=None)
@given(raw_events=st.lists(events, max_size=20))
def test_ingest_validation_matches_parse_event(raw_events: list[Any]) -> None:
    store = MemoryStore(ttl=10_000, max_entries=1000)
    kinds_a, kinds_b = KindCatalogue(3), KindCatalogue(3)
    domains = DomainGuard(10, (), 1)
    metrics = ExporterMetrics(CollectorRegistry(), "t", kinds_a, domains, store)
    ingest = Ingest(metrics, kinds_a, domains, store, lambda: 1_000_000.0)
    summary = Summary()
    valid = ingest._validate(raw_events, 1_000_000.0, summary)
    expected = [parse_event(raw, kinds_b) for raw in raw_events]
    accepted = [e for e in expected if isinstance(e, Event)]
    assert [(e.message_id, e.recipient, e.at or 1_000_000.0, e.kind) for e in accepted] == [
        (v[0], v[1], v[3], v[4]) for v in valid
    ]
    assert summary.rejected == len(expected) - len(accepted)
    for reason in REJECT_REASONS:
        assert metrics.rejected[reason] == sum(1 for e in expected if e == reason)
    # A claim exactly for the events with a message id and a catalogued kind.
    assert [v[2] for v in valid] == [
        KIND_INDEX[e.kind] if e.message_id is not None and e.kind in KIND_INDEX else NO_CLAIM
        for e in accepted
    ]
