"""The hot paths written for speed agree with the readable statements of the rules:
the memory store with `decide`, the ingest loop with `parse_event` and the
metrics' own methods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import example, given, settings
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
from exporter.ingest import Summary, count, validate
from exporter.metrics import DELIVERY_BUCKETS, MAX_EXEMPLAR_ID, ExporterMetrics
from exporter.stores.memory import MemoryStore
from exporter.timing import DUPLICATE, NO_CLAIM, NOTHING, UNMATCHED, Claim, Verdict
from tests.oracle import Records

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
    oracle = Records()
    expected = [oracle.apply([(c[0], c[1]) for c in b], b, 1_000_000.0) for b in batches]
    assert got == expected
    assert store.pending == oracle.pending


# Recipients in the spellings a mail system passes on (RFC 5322), some with
# one usable domain and some without.
spelled_recipients = st.one_of(
    st.sampled_from(
        ["no-at-sign", "<>", "<a>", "a@y.example, b@x.example", "g:;", '@b,"', "a@z.example>"]
    ),
    st.builds(
        lambda local, domain, form: form.format(f"{local}@{domain}"),
        st.sampled_from(["a", "B", '"a@b"', "(c) d", ""]),
        st.sampled_from(["x.example", "Y.example", "z.example", "bad..x", "bücher.example", ""]),
        st.sampled_from(
            ["{}", "<{}>", '"Jo" <{}>', "Jo <{}>", "{}>", "{} (Jo)", "g: {};", "{} ", "<{}"]
        ),
    ),
)
# Numeric kinds as JSON spells them: integers, and floats integral or not.
numbers = st.one_of(
    st.integers(-5, 2000),
    st.integers(-5, 2000).map(float),
    st.sampled_from([-0.0, 1e300, -1e300, 2.0**64, 10.5, 1e-300]),
    st.floats(allow_nan=False),
)
values = st.one_of(
    st.none(), st.booleans(), numbers, st.text(max_size=8),
    st.sampled_from([*KNOWN_KINDS, "rate_limited", "new_kind", "Bad", "", "10", "#7"]),
    st.just("2026-11-27T10:00:00Z"), st.lists(st.integers(), max_size=2),
)  # fmt: skip
events = st.one_of(
    values,
    st.dictionaries(
        st.sampled_from(["kind", "recipient", "message_id", "timestamp", "created_at", "x"]),
        values | st.sampled_from(["a@b.example", "m-1"]) | spelled_recipients,
        max_size=6,
    ),
)


@settings(max_examples=300, deadline=None)
@given(raw_events=st.lists(events, max_size=20))
# The epoch is a valid time, not a missing one.
@example(raw_events=[{"recipient": "0", "timestamp": 0, "kind": 0}])
def test_ingest_validation_matches_parse_event(raw_events: list[Any]) -> None:
    store = MemoryStore(ttl=10_000, max_entries=1000)
    kinds_a, kinds_b = KindCatalogue(3), KindCatalogue(3)
    domains = DomainGuard(10, (), 1)
    metrics = ExporterMetrics(CollectorRegistry(), "t", kinds_a, domains, store)
    summary = Summary()
    valid = validate(raw_events, 1_000_000.0, kinds_a, metrics.rejected, summary)
    expected = [parse_event(raw, kinds_b) for raw in raw_events]
    accepted = [e for e in expected if isinstance(e, Event)]
    assert [
        (e.message_id, e.recipient, 1_000_000.0 if e.at is None else e.at, e.kind) for e in accepted
    ] == [(v[0], v[1], v[3], v[4]) for v in valid]
    assert summary.rejected == len(expected) - len(accepted)
    for reason in REJECT_REASONS:
        assert metrics.rejected[reason] == sum(1 for e in expected if e == reason)
    # A claim exactly for the events with a message id and a catalogued kind.
    assert [v[2] for v in valid] == [
        KIND_INDEX[e.kind] if e.message_id is not None and e.kind in KIND_INDEX else NO_CLAIM
        for e in accepted
    ]


counted = st.lists(
    st.tuples(
        st.sampled_from([None, "m-1", "m" * MAX_EXEMPLAR_ID, "m" * (MAX_EXEMPLAR_ID + 1)]),
        st.sampled_from(["a@x.example", "b@Y.example", "c@z.example", "no-at-sign", "d@bad..x"])
        | spelled_recipients,
        st.sampled_from(KNOWN_KINDS),
        st.sampled_from([DUPLICATE, NOTHING, UNMATCHED, 0.0, *DELIVERY_BUCKETS, 1e9])
        | st.floats(0, 300_000, allow_nan=False),
    ).map(
        # The stores time neither registrations nor their absence.
        lambda e: e if e[2] != "registration" or e[3] == DUPLICATE else (*e[:3], NOTHING)
    ),
    max_size=30,
)


def count_reference(
    metrics: ExporterMetrics, domains: DomainGuard, valid: list[Claim], verdicts: list[Verdict]
) -> None:
    """What `count` does, through the metrics' and the domain guard's own methods."""
    for (message_id, recipient, _, at, kind), verdict in zip(valid, verdicts, strict=True):
        if verdict == DUPLICATE:
            metrics.duplicates[kind] += 1
            continue
        domain = domains.label(recipient)
        metrics.count_event(kind, domain)
        if verdict >= 0:
            metrics.since_registration[kind].observe(verdict, message_id, at)
            if kind == "delivery":
                metrics.add_domain(domain)
                metrics.to_delivery[domain].observe(verdict, message_id, at)
        elif verdict == UNMATCHED:
            metrics.unmatched[kind] += 1


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(counted, max_size=4))
def test_ingest_counting_matches_metrics_methods(
    batches: list[list[tuple[str | None, str, str, float]]],
) -> None:
    sides = []
    for _ in range(2):
        store = MemoryStore(ttl=10_000, max_entries=1000)
        kinds = KindCatalogue(3)
        # One domain admitted from its second event: some are "other",
        # some overflow, some are invalid.
        domains = DomainGuard(1, (), 2)
        sides.append((ExporterMetrics(CollectorRegistry(), "t", kinds, domains, store), domains))
    (fast, fast_domains), (slow, slow_domains) = sides
    for batch in batches:
        valid: list[Claim] = [
            (m, r, NO_CLAIM, 1_000_000.0 + i, k) for i, (m, r, k, _) in enumerate(batch)
        ]
        verdicts = [e[3] for e in batch]
        summary = Summary()
        count(fast, fast_domains, valid, verdicts, summary)
        count_reference(slow, slow_domains, valid, verdicts)
        assert summary.duplicates == verdicts.count(DUPLICATE)
        assert summary.accepted == len(verdicts) - summary.duplicates
    assert fast.events == slow.events
    assert fast.duplicates == slow.duplicates
    assert fast.unmatched == slow.unmatched
    assert fast_domains.overflow_events == slow_domains.overflow_events
    pairs = [
        (fast.since_registration, slow.since_registration),
        (fast.to_delivery, slow.to_delivery),
    ]
    for fast_hists, slow_hists in pairs:
        assert fast_hists.keys() == slow_hists.keys()
        for key, hist in fast_hists.items():
            other = slow_hists[key]
            assert (hist.counts, hist.total, hist.exemplars) == (
                other.counts,
                other.total,
                other.exemplars,
            )


def test_ingest_counting_refuses_a_verdict_count_that_does_not_match() -> None:
    store = MemoryStore(ttl=10_000, max_entries=1000)
    domains = DomainGuard(2, (), 1)
    metrics = ExporterMetrics(CollectorRegistry(), "t", KindCatalogue(3), domains, store)
    valid: list[Claim] = [("m-1", "a@x.example", NO_CLAIM, 1.0, "delivery")]
    with pytest.raises(ValueError, match="one verdict per valid event"):
        count(metrics, domains, valid, [], Summary())
    assert metrics.events == {"other": dict.fromkeys(KNOWN_KINDS, 0)}
