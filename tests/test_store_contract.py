"""The behaviour every state store shares, run against each of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from bench.processes import RedisServer, redis_server
from exporter.events import KIND_INDEX
from exporter.stores.base import StateStore
from exporter.timing import DUPLICATE, NOTHING, UNMATCHED, Claim
from tests.stores import memory_store, redis_opener, sqlite_store

T0 = 1_800_000_000.0
Opener = Callable[[float, int, Path], AbstractAsyncContextManager[StateStore]]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def claim(kind: str, at: float, message_id: str = "m-1", recipient: str = "a@x.example") -> Claim:
    return (message_id, recipient, KIND_INDEX[kind], at, kind)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "memory":
        return memory_store
    if request.param == "sqlite":
        return sqlite_store
    opener: Opener = redis_opener(request.getfixturevalue("redis"))
    return opener


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


class Body:
    """Distinct request bodies, as every real POST has."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(16, "big")


async def apply(store: StateStore, body: Body, *claims: Claim, now: float = T0) -> list[Any]:
    outcome = await store.apply(body(), list(claims), now)
    assert not outcome.body_seen
    return outcome.verdicts


def test_registration_to_delivery(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            body = Body()
            (reg,) = await apply(store, body, claim("registration", T0))
            assert reg == NOTHING
            await store.maintain(T0)
            assert store.pending == 1
            (dlv,) = await apply(store, body, claim("delivery", T0 + 42.5), now=T0 + 43)
            assert dlv == pytest.approx(42.5, abs=0.002)
            await store.maintain(T0 + 43)
            assert store.pending == 0

    run(go)


def test_once_per_message_kinds_are_recognised_again(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            body = Body()
            for kind in ("registration", "dispatch", "delivery"):
                first, second = await apply(store, body, claim(kind, T0), claim(kind, T0 + 1))
                assert first != DUPLICATE
                assert second == DUPLICATE
            # Same message, another recipient: a different delivery.
            (other,) = await apply(store, body, claim("delivery", T0, recipient="b@x.example"))
            assert other != DUPLICATE

    run(go)


def test_repeatable_kinds_are_timed_once_and_never_duplicates(
    opener: Opener, tmp_path: Path
) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            body = Body()
            await apply(store, body, claim("registration", T0), claim("delivery", T0 + 5))
            first, second = await apply(
                store, body, claim("open", T0 + 100), claim("open", T0 + 200)
            )
            assert first == pytest.approx(100, abs=0.002)
            assert second == NOTHING

    run(go)


def test_retried_body_is_seen(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            first = await store.apply(b"same-body-digest", [claim("registration", T0)], T0)
            again = await store.apply(b"same-body-digest", [claim("registration", T0)], T0 + 1)
            assert not first.body_seen
            assert again.body_seen
            await store.maintain(T0 + 1)
            assert store.pending == 1

    run(go)


def test_late_registration_starts_no_clock(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            body = Body()
            (dlv,) = await apply(store, body, claim("delivery", T0 + 10))
            assert dlv == UNMATCHED
            (reg,) = await apply(store, body, claim("registration", T0))
            assert reg != DUPLICATE
            (opened,) = await apply(store, body, claim("open", T0 + 20))
            assert opened == UNMATCHED
            await store.maintain(T0 + 20)
            assert store.pending == 0

    run(go)


def test_expiry_counts_pending_and_forgets(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(100, 1000, tmp_path) as store:
            body = Body()
            await apply(store, body, claim("registration", T0, "old"))
            await apply(store, body, claim("registration", T0 + 90, "young"), now=T0 + 90)
            await store.maintain(T0 + 150)
            assert store.evicted["expired"] == 1
            assert store.pending == 1
            (late,) = await apply(store, body, claim("delivery", T0 + 151, "old"), now=T0 + 151)
            assert late == UNMATCHED
            (ok,) = await apply(store, body, claim("delivery", T0 + 151, "young"), now=T0 + 151)
            assert ok == pytest.approx(61, abs=0.002)
            # A body is remembered for the same window, then forgotten.
            seen = await store.apply(b"window", [], T0 + 151)
            assert not seen.body_seen
            await store.maintain(T0 + 300)
            assert not (await store.apply(b"window", [], T0 + 300)).body_seen

    run(go)


def test_capacity_evicts_oldest_first_and_counts(opener: Opener, tmp_path: Path) -> None:
    async def go() -> None:
        async with opener(3600, 100, tmp_path) as store:
            body = Body()
            for i in range(150):
                await apply(store, body, claim("registration", T0 + i, f"m{i}"), now=T0 + i)
            await store.maintain(T0 + 150)
            assert store.evicted["capacity"] >= 50
            assert store.pending == 150 - store.evicted["capacity"]
            assert store.pending <= 100
            (newest,) = await apply(store, body, claim("delivery", T0 + 200, "m149"), now=T0 + 200)
            assert newest == pytest.approx(51, abs=0.002)
            (oldest,) = await apply(store, body, claim("delivery", T0 + 200, "m0"), now=T0 + 200)
            assert oldest == UNMATCHED

    run(go)


def test_delivered_messages_leave_pending_but_stay_for_engagement(
    opener: Opener, tmp_path: Path
) -> None:
    async def go() -> None:
        async with opener(3600, 1000, tmp_path) as store:
            body = Body()
            await apply(store, body, *(claim("registration", T0, f"m{i}") for i in range(10)))
            await apply(store, body, *(claim("bounce", T0 + 3, f"m{i}") for i in range(4)))
            await store.maintain(T0 + 5)
            assert store.pending == 6
            (click,) = await apply(store, body, claim("click", T0 + 60, "m1"))
            assert click == pytest.approx(60, abs=0.002)
            await store.maintain(T0 + 60)
            assert store.evicted == {"expired": 0, "capacity": 0}

    run(go)
