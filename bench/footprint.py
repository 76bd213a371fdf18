"""Memory per pending message (memory store), bytes per message on disk (SQLite)
and Redis memory per message remembered.

`memory` and `sqlite` register messages and nothing else: the floor. `mixed`
replays what a real sender's messages go through (exporter/simulate.py:
registration, dispatch, delivery, some bounces and soft bounces, opens and
clicks), in webhooks of up to 100 events, and reports both stores' bytes per
message: every event of a message logs its record's new state in SQLite.

Run as a child process so its resident memory is the store's and nothing else's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
from pathlib import Path

import orjson

from exporter.events import KIND_INDEX
from exporter.simulate import Simulator, Traffic
from exporter.stores.memory import MemoryStore
from exporter.stores.redis import RedisStore
from exporter.stores.sqlite import SQLiteStore
from exporter.timing import Claim

CHUNK = 10_000


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def claims(start: int, count: int) -> list[Claim]:
    reg = KIND_INDEX["registration"]
    return [
        (
            f"{i:08x}-dd97-4e10-9a61-067f98044cc7",
            f"user{i}@d{i % 100}.example",
            reg,
            1e9,
            "registration",
        )
        for i in range(start, start + count)
    ]


async def memory_bytes_per_pending(messages: int) -> float:
    store = MemoryStore(ttl=1e9, max_entries=messages * 2)
    # Warm the allocator with one chunk's worth of temporary objects first, so
    # that what follows measures the records, not the interpreter's arenas.
    await store.apply(b"warm-up", claims(messages, CHUNK), 1e9)
    store = MemoryStore(ttl=1e9, max_entries=messages * 2)
    gc.collect()
    before = rss()
    for n, i in enumerate(range(0, messages, CHUNK)):
        await store.apply(n.to_bytes(16, "big"), claims(i, min(CHUNK, messages - i)), 1e9)
    gc.collect()
    assert store.pending == messages
    # The body digests (one per batch here) are part of what the store keeps.
    return (rss() - before) / messages


async def sqlite_bytes_per_message(messages: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        store = SQLiteStore(path, ttl=1e9, max_entries=messages * 2, timeout=30)
        await store.start()
        for n, i in enumerate(range(0, messages, CHUNK)):
            await store.apply(n.to_bytes(16, "big"), claims(i, min(CHUNK, messages - i)), 1e9)
        await store.stop()
        return path.stat().st_size / messages


def mixed_stream(messages: int) -> list[tuple[bytes, list[Claim]]]:
    """Webhooks of a simulated sender (100 messages/s, delivery in about 2 s),
    virtual time, until `messages` are registered and their events sent."""
    traffic = Traffic(rate=100, duration=86_400, seed=7)
    simulator = Simulator(traffic)
    webhooks: list[tuple[bytes, list[Claim]]] = []
    now, registered = 1e9, 0
    while registered < messages or simulator.queue:
        if registered < messages:
            for _ in range(int(traffic.rate * traffic.tick)):
                simulator.new_message(now)
                registered += 1
        events = simulator.due(now)
        for i in range(0, len(events), traffic.batch_size):
            batch = events[i : i + traffic.batch_size]
            claims: list[Claim] = [
                (e["message_id"], e["recipient"], KIND_INDEX[e["kind"]], now, e["kind"])
                for e in batch
            ]
            webhooks.append((orjson.dumps({"events": batch}), claims))
        now += traffic.tick
    return webhooks


async def mixed_bytes_per_message(messages: int) -> dict[str, float]:
    webhooks = mixed_stream(messages)
    events = sum(len(claims) for _, claims in webhooks)
    # The memory store first, while the process holds nothing else new: its
    # records and the bodies it remembers (the SQLite store keeps the same
    # in memory, and SQLite's page cache besides).
    memory = MemoryStore(ttl=1e9, max_entries=messages * 2)
    gc.collect()
    before = rss()
    for body, claims in webhooks:
        await memory.apply(body, claims, claims[0][3])
    gc.collect()
    in_memory = (rss() - before) / messages
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        store = SQLiteStore(path, ttl=1e9, max_entries=messages * 2, timeout=30)
        await store.start()
        for body, claims in webhooks:
            await store.apply(body, claims, claims[0][3])
        await store.stop()
        on_disk = path.stat().st_size / messages
    return {
        "messages": messages,
        "events_per_message": events / messages,
        "webhooks": len(webhooks),
        "memory_bytes_per_message": in_memory,
        "sqlite_bytes_per_message": on_disk,
    }


async def redis_bytes_per_message(messages: int) -> float:
    """Redis's used_memory per message, over a mixed stream: every message
    registered, dispatched, then delivered (60%), bounced (10%) or still
    pending (30%), in 100-event batches as CloudMailin posts them. A delivered
    message is remembered for the duplicate window like a pending one."""
    import redis  # noqa: PLC0415

    from bench.processes import RedisServer  # noqa: PLC0415

    reg, dispatch = KIND_INDEX["registration"], KIND_INDEX["dispatch"]
    outcomes = [KIND_INDEX["delivery"]] * 6 + [KIND_INDEX["bounce"]] + [-1] * 3
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = redis.Redis(port=server.port)
            store = RedisStore(server.url, ttl=1e9, max_entries=messages * 2, timeout=30)
            await store.start()
            before = int(client.info("memory")["used_memory"])
            batch, n = 100, 0
            for i in range(0, messages, batch):
                stream: list[Claim] = []
                for m in range(i, min(i + batch, messages)):
                    (message_id, recipient, _, at, _) = claims(m, 1)[0]
                    stream.append((message_id, recipient, reg, at, "registration"))
                    stream.append((message_id, recipient, dispatch, at + 1, "dispatch"))
                    if outcomes[m % 10] >= 0:
                        stream.append((message_id, recipient, outcomes[m % 10], at + 9, "x"))
                for first in range(0, len(stream), batch):
                    n += 1
                    await store.apply(n.to_bytes(16, "big"), stream[first : first + batch], 1e9)
            used = int(client.info("memory")["used_memory"]) - before
            await store.maintain(1e9)
            assert store.pending == messages * 3 // 10
            await store.stop()
            return used / messages
        finally:
            server.stop()


def main() -> None:
    which, messages = sys.argv[1], int(sys.argv[2])
    if which == "mixed":
        print(json.dumps(asyncio.run(mixed_bytes_per_message(messages))))
        return
    measure = {
        "memory": memory_bytes_per_pending,
        "sqlite": sqlite_bytes_per_message,
        "redis": redis_bytes_per_message,
    }[which]
    print(json.dumps({"bytes_per_message": asyncio.run(measure(messages))}))


if __name__ == "__main__":
    main()
