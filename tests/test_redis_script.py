"""The Redis store's Lua script against the readable statement, `timing.decide`.

Random streams of batches and maintenance go through a real redis-server and
through a model written with `decide` over `Record`s (expiry and capacity
eviction oldest first, bodies remembered for the window); verdicts, retries,
the pending count and the eviction counters must agree after every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, given, settings

from bench.processes import RedisServer, redis_server
from exporter.events import KIND_INDEX, KNOWN_KINDS
from exporter.stores.base import body_digest
from exporter.stores.redis import BATCH_SCRIPT, MAINTENANCE_SWEEPS, RedisStore
from exporter.timing import (
    NO_CLAIM,
    NOTHING,
    UNMATCHED,
    Claim,
    Record,
    Verdict,
    decide,
    message_digest,
)

T0 = 1_800_000_000.0
TTL = 100.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis-script")) as running:
        yield running


@dataclass
class Model:
    """What the store must do, stated with `decide` and plain dicts."""

    ttl: float
    max_entries: int
    # Insertion order is creation order: the order of expiry and eviction.
    records: dict[bytes, Record] = field(default_factory=dict)
    bodies: dict[bytes, float] = field(default_factory=dict)
    evicted: dict[str, int] = field(default_factory=lambda: {"expired": 0, "capacity": 0})

    @property
    def pending(self) -> int:
        return sum(r.pending for r in self.records.values())

    def _sweep(self, now: float) -> None:
        cutoff = now - self.ttl
        for key in list(self.records):
            record = self.records[key]
            if record.created >= cutoff:
                break
            del self.records[key]
            self.evicted["expired"] += record.pending
        while len(self.records) > self.max_entries:
            oldest = next(iter(self.records))
            self.evicted["capacity"] += self.records.pop(oldest).pending
        self.bodies = {b: t for b, t in self.bodies.items() if t >= cutoff}
        # Oldest first; among bodies of the same time, Redis's sorted set
        # orders by the member, here the body's digest.
        ranked = sorted(self.bodies.items(), key=lambda bt: (bt[1], bt[0]))
        for body, _ in ranked[: max(0, len(ranked) - self.max_entries)]:
            del self.bodies[body]

    def apply(self, digest: bytes, claims: list[Claim], now: float) -> list[Verdict] | None:
        seen = self.bodies.get(digest)
        if seen is not None and seen >= now - self.ttl:
            return None
        cutoff = now - self.ttl
        for key in list(self.records):
            if self.records[key].created >= cutoff:
                break
            self.evicted["expired"] += self.records.pop(key).pending
        verdicts: list[Verdict] = []
        for claim in claims:
            if claim[2] == NO_CLAIM:
                verdicts.append(NOTHING)
                continue
            record = self.records.setdefault(message_digest(claim), Record(created=now))
            verdicts.append(decide(record, claim))
        self.bodies[digest] = now
        self._sweep(now)
        return verdicts

    def maintain(self, now: float) -> None:
        self._sweep(now)


MESSAGES = [("m-1", "a@x.example"), ("m-1", "b@x.example"), ("m-2", "a@x.example"),
            ("m-3", "c@y.example"), ("m-4", "d@y.example"), ("m-5", "e@z.example")]  # fmt: skip

claims_st = st.one_of(
    st.builds(
        lambda m, kind, dt: (*MESSAGES[m], KIND_INDEX[kind], dt, kind),
        st.integers(0, len(MESSAGES) - 1),
        # Registrations and terminal kinds often, so that messages are timed.
        st.one_of(
            st.sampled_from(["registration", "delivery", "bounce", "open", "dispatch"]),
            st.sampled_from(KNOWN_KINDS),
        ),
        st.floats(-30, 60, allow_nan=False).map(lambda x: round(x, 3)),
    ),
    # An event that says nothing about a message.
    st.builds(lambda dt: (None, "n@x.example", NO_CLAIM, dt, "open"), st.floats(0, 1)),
)
steps_st = st.lists(
    st.one_of(
        st.tuples(
            st.just("batch"),
            st.integers(0, 4),  # which body: a few, so that some repeat
            st.lists(claims_st, max_size=8),
            st.floats(0, 70).map(lambda x: round(x, 3)),  # time passing first
        ),
        st.tuples(st.just("maintain"), st.just(0), st.just([]), st.floats(0, 150)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps_st, max_entries=st.integers(2, 8))
def test_script_agrees_with_decide(
    server: RedisServer, steps: list[tuple[str, int, list[Claim], float]], max_entries: int
) -> None:
    redis.Redis(port=server.port).flushall()
    model = Model(TTL, max_entries)

    async def go() -> None:
        store = RedisStore(server.url, TTL, max_entries, timeout=5)
        await store.start()
        try:
            now = T0
            batch_number = 0
            for what, body_index, raw, wait in steps:
                now += wait
                if what == "maintain":
                    await store.maintain(now)
                    model.maintain(now)
                else:
                    batch_number += 1
                    body = b"body-%d" % body_index
                    claims = [(c[0], c[1], c[2], now + c[3], c[4]) for c in raw]
                    outcome = await store.apply(body, claims, now)
                    expected = model.apply(body_digest(body), claims, now)
                    assert outcome.body_seen == (expected is None)
                    if expected is not None:
                        assert outcome.verdicts == expected
                assert store.pending == model.pending
                assert store.evicted == model.evicted
        finally:
            await store.stop()

    asyncio.run(go())


def test_the_script_writes_only_its_declared_keys_in_one_slot(server: RedisServer) -> None:
    """Redis Cluster routes a script by its KEYS: it may touch no other key,
    and all of them must hash to one slot (one hash tag)."""
    redis.Redis(port=server.port).flushall()
    store = RedisStore(server.url, TTL, 2, timeout=5, prefix="tenant-a")
    assert {key.split("}")[0] for key in store.keys} == {"{tenant-a"}
    registration = KIND_INDEX["registration"]

    async def go() -> None:
        await store.start()
        try:
            for i in range(5):  # past capacity, then past the window
                claim = (f"m{i}", "r@x.example", registration, T0 + i, "registration")
                await store.apply(b"%d" % i, [claim], T0 + i)
            await store.maintain(T0 + 1000)
        finally:
            await store.stop()

    asyncio.run(go())
    assert store.evicted["capacity"] == 3
    written = {k.decode() for k in redis.Redis(port=server.port).keys("*")}  # type: ignore[union-attr]
    assert written
    assert written <= set(store.keys)


def test_no_key_name_is_built_inside_the_script() -> None:
    """Every redis.call names its key through a local bound from KEYS."""
    code = [line.split("--")[0] for line in BATCH_SCRIPT.splitlines()]
    bound = "local records, order, bodies, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]"
    assert bound in code
    calls = [line.split("redis.call(")[1] for line in code if "redis.call(" in line]
    assert len(calls) > 10
    for call in calls:
        key = call.split(",")[1].split(")")[0].strip()
        assert key in {"records", "order", "bodies", "pending_key", "key"}, call
    assert "for _, key in ipairs({records, order, bodies}) do" in code


def test_records_past_the_window_that_no_sweep_reached_yet_are_gone(server: RedisServer) -> None:
    """A sweep stops after `sweep` records; a record it did not reach is still
    expired (and counted) when a claim reads it."""
    redis.Redis(port=server.port).flushall()
    store = RedisStore(server.url, TTL, 100, timeout=5)
    store.sweep = 1
    reg, dlv = KIND_INDEX["registration"], KIND_INDEX["delivery"]
    later = T0 + TTL + 1

    async def go() -> list[Verdict]:
        await store.start()
        try:
            await store.apply(b"r", [(f"m{i}", "r@x.example", reg, T0, "r") for i in range(4)], T0)
            assert store.pending == 4
            outcome = await store.apply(
                b"d", [(f"m{i}", "r@x.example", dlv, later, "d") for i in range(4)], later
            )
            return outcome.verdicts
        finally:
            await store.stop()

    assert asyncio.run(go()) == [UNMATCHED] * 4
    assert store.evicted == {"expired": 4, "capacity": 0}
    assert store.pending == 0


def test_a_backlog_is_expired_a_bounded_slice_per_maintenance(server: RedisServer) -> None:
    """Each maintenance call does at most MAINTENANCE_SWEEPS sweeps, so a
    large backlog never outlasts the store timeout; the next calls finish it."""
    redis.Redis(port=server.port).flushall()
    store = RedisStore(server.url, TTL, 1000, timeout=5)
    store.sweep = 2
    reg = KIND_INDEX["registration"]
    backlog = 2 * MAINTENANCE_SWEEPS + 5
    later = T0 + TTL + 1

    async def go() -> list[int]:
        await store.start()
        try:
            claims = [(f"m{i}", "r@x.example", reg, T0, "r") for i in range(backlog)]
            await store.apply(b"r", claims, T0)
            seen = []
            for _ in range(3):
                await store.maintain(later)
                seen.append(store.evicted["expired"])
            return seen
        finally:
            await store.stop()

    assert asyncio.run(go()) == [2 * MAINTENANCE_SWEEPS, backlog, backlog]
    assert store.pending == 0
