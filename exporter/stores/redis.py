"""Redis store: shared by every replica, so the exporter scales past one pod.

A message's record is one string key; read-modify-write of a batch runs
under WATCH/MULTI, so two replicas applying events of the same message
never lose one another's update. Expiry and capacity eviction run as Lua
scripts, atomic across replicas, so each evicted message is counted once.
Every key also carries a Redis TTL, so nothing outlives the window even if
every replica is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.stores.base import Outcome, StateStore, StoreError, body_digest
from exporter.timing import DUPLICATE, NOTHING, Claim, Record, decide, message_digest

log = logging.getLogger(__name__)

# Concurrent replicas rarely touch the same message at once; a batch that
# keeps colliding after this many tries is reported as a failed write.
WATCH_RETRIES: Final = 8
# Expiry and eviction work in slices so no script blocks Redis for long.
SWEEP: Final = 1000

# KEYS: records zset, pending zset. ARGV: cutoff score, max count.
# Deletes records scored at or below the cutoff (at most ARGV[2]); returns
# {deleted, of which pending}.
EVICT_SCRIPT: Final = """
local victims = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local pending = 0
for _, member in ipairs(victims) do
  pending = pending + redis.call('ZREM', KEYS[2], member)
  redis.call('DEL', ARGV[3] .. member)
  redis.call('ZREM', KEYS[1], member)
end
return {#victims, pending}
"""


def encode(record: Record) -> str:
    registered = "" if record.registered_at is None else repr(record.registered_at)
    return f"{record.created!r},{registered},{record.seen}"


def decode(text: bytes | str) -> Record:
    raw = text.decode() if isinstance(text, bytes) else text
    created, registered, seen = raw.split(",")
    return Record(float(created), float(registered) if registered else None, int(seen))


class RedisStore(StateStore):
    remote = True

    def __init__(
        self,
        url: str,
        ttl: float,
        max_entries: int,
        timeout: float,
        prefix: str = "cloudmailin-exporter:",
    ) -> None:
        super().__init__(ttl, max_entries, timeout)
        self.url = url
        self.prefix = prefix
        self._records = prefix + "records"
        self._pending = prefix + "pending"
        # Keys outlive the window a little: the sweep, which counts what it
        # evicts, should get to them before Redis drops them silently.
        self._key_ttl = int(ttl * 1.1) + 60
        self._digest = body_digest
        self._client: aioredis.Redis | None = None
        self._evict: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry_on_timeout=False,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL: {exc}") from None
        self._evict = self._client.register_script(EVICT_SCRIPT)
        try:
            await self._client.ping()
        except RedisError as exc:
            # Start anyway, marked down: the store is retried every second and
            # events are counted meanwhile.
            self._failed("connect", str(exc))

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("connect", "store is not open")
        return self._client

    async def apply(self, body: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        made = [i for i, claim in enumerate(claims) if claim[2] >= 0]
        try:
            outcome = await self._apply(self._digest(body), [claims[i] for i in made], now)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreError("connect", str(exc)) from exc
        except RedisError as exc:
            raise StoreError("write", str(exc)) from exc
        if outcome.body_seen:
            return outcome
        verdicts = [NOTHING] * len(claims)
        for i, verdict in zip(made, outcome.verdicts, strict=True):
            verdicts[i] = verdict
        return Outcome(body_seen=False, verdicts=verdicts)

    async def _apply(self, body_key: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        client = self._redis()
        body = f"{self.prefix}b:{body_key.hex()}"
        members = [message_digest(c).hex() for c in claims]
        unique = list(dict.fromkeys(members))
        names = [f"{self.prefix}m:{m}" for m in unique]
        cutoff = now - self.ttl
        async with client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_RETRIES):
                try:
                    await pipe.watch(body, *names)
                    seen = await pipe.get(body)
                    if seen is not None and float(seen) >= cutoff:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return Outcome(body_seen=True)
                    stored = await pipe.mget(names) if names else []
                    records: dict[str, Record] = {}
                    for member, value in zip(unique, stored, strict=True):
                        if value is not None:
                            record = decode(value)
                            if record.created >= cutoff:
                                records[member] = record
                    existed = set(records)
                    verdicts, changed, entering, leaving = [], {}, set(), set()
                    for member, claim in zip(members, claims, strict=True):
                        record = records.setdefault(member, Record(created=now))
                        was = record.pending
                        verdict = decide(record, claim)
                        verdicts.append(verdict)
                        if verdict != DUPLICATE:
                            changed[member] = record
                            if record.pending and not was:
                                entering.add(member)
                            elif was and not record.pending:
                                leaving.add(member)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(body, repr(now), ex=int(self.ttl) + 1)
                    for member, record in changed.items():
                        name = f"{self.prefix}m:{member}"
                        if member in existed:
                            pipe.set(name, encode(record), keepttl=True)
                        else:
                            pipe.set(name, encode(record), ex=self._key_ttl)
                            pipe.zadd(self._records, {member: record.created})
                    if entering - leaving:
                        pipe.zadd(
                            self._pending, {m: changed[m].created for m in entering - leaving}
                        )
                    if leaving - entering:
                        pipe.zrem(self._pending, *(leaving - entering))
                    await pipe.execute()
                    return Outcome(body_seen=False, verdicts=verdicts)
                except WatchError:
                    continue
        raise StoreError("write", "batch kept colliding with other replicas")

    async def maintain(self, now: float) -> None:
        try:
            await self._maintain(now)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreError("connect", str(exc)) from exc
        except RedisError as exc:
            raise StoreError("expire", str(exc)) from exc

    async def _maintain(self, now: float) -> None:
        client = self._redis()
        keys = [self._records, self._pending]
        prefix = self.prefix + "m:"
        while True:
            deleted, pending = await self._evict(keys, [now - self.ttl, SWEEP, prefix])
            self.evicted["expired"] += pending
            if deleted < SWEEP:
                break
        excess = await client.zcard(self._records) - self.max_entries
        while excess > 0:
            # The score of the newest victim: evict everything up to it.
            edge = await client.zrange(self._records, excess - 1, excess - 1, withscores=True)
            if not edge:
                break
            deleted, pending = await self._evict(keys, [edge[0][1], min(excess, SWEEP), prefix])
            self.evicted["capacity"] += pending
            excess -= max(deleted, 1)
        self.pending = await client.zcard(self._pending)
