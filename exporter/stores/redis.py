"""Redis store: shared by every replica, so the exporter scales past one pod.

A batch costs one round trip: `redis_batch.lua`, loaded once and called by
its SHA, checks the body, applies every claim with `timing.decide`'s rules,
expires and evicts the oldest records and keeps the pending count, atomically
across replicas (a script runs alone), so nothing is retried and each
evicted message is counted once. Its keys share one hash tag and are all
passed in KEYS, as Redis Cluster needs. Every key carries a Redis TTL, so
nothing outlives the window even if every replica is gone.

`redis+sentinel://` URLs reach the master through Redis Sentinel and follow
it to a new master after a failover.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.stores.base import Outcome, StateStore, StoreError, body_digest
from exporter.timing import (
    NO_CLAIM,
    ONCE_BITS,
    REGISTRATION_BIT,
    TERMINAL_BITS,
    Claim,
    message_digest,
)

BATCH_SCRIPT: Final = files("exporter.stores").joinpath("redis_batch.lua").read_text()
# Most records one script call drops (expiry and eviction) before it returns,
# so that no call blocks Redis (and every replica) for long; maintenance calls
# again, up to MAINTENANCE_SWEEPS times a second.
SWEEP: Final = 1000
# Sweeps per maintenance call (every second): 20,000 records, a few ms of Redis.
MAINTENANCE_SWEEPS: Final = 20
# The script's code for "no claim" (kinds are one byte each).
_NO_CLAIM: Final = 255
_NO_MEMBER: Final = bytes(8)
SENTINEL_SCHEME: Final = "redis+sentinel"


@dataclass(frozen=True)
class SentinelURL:
    """`redis+sentinel://[:password@]host1:26379,host2:26379/<master-name>/<db>`."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Raise ValueError saying what is wrong with `url`."""
        scheme, sep, rest = url.partition("://")
        if scheme != SENTINEL_SCHEME or not sep:
            raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}://")
        netloc, _, path = rest.partition("/")
        password = None
        if "@" in netloc:
            userinfo, _, netloc = netloc.rpartition("@")
            password = unquote(userinfo.partition(":")[2]) or None
        sentinels = []
        for part in netloc.split(","):
            host, colon, port = part.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"Sentinel address {part.strip()!r} is not host:port")
            sentinels.append((host.strip("[]"), int(port)))
        parts = path.split("/")
        if not parts[0]:
            raise ValueError("the Sentinel URL names no master (…/<master-name>/<db>)")
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError("the Sentinel URL's database is not a number (…/<master-name>/<db>)")
        db = int(parts[1]) if len(parts) == 2 else 0
        return cls(tuple(sentinels), unquote(parts[0]), db, password)


def _signed32(bits: int) -> int:
    # Lua's bit library works on signed 32-bit integers.
    return bits - (1 << 32) if bits >= 1 << 31 else bits


class RedisStore(StateStore):
    remote = True

    def __init__(
        self,
        url: str,
        ttl: float,
        max_entries: int,
        timeout: float,
        prefix: str = "cloudmailin-exporter",
    ) -> None:
        super().__init__(ttl, max_entries, timeout)
        self.url = url
        # One hash tag: Redis Cluster puts every key of the script in one slot.
        tag = "{" + prefix + "}:"
        self.keys = [tag + "records", tag + "order", tag + "bodies", tag + "pending"]
        # Keys outlive the window a little: the script, which counts what it
        # evicts, should get to records before Redis drops the keys silently.
        self._key_ttl = str(int(ttl * 1.1) + 60)
        self._constants = [
            str(_signed32(REGISTRATION_BIT)),
            str(_signed32(ONCE_BITS)),
            str(_signed32(TERMINAL_BITS)),
        ]
        # SWEEP; tests lower it to reach the paths of an unfinished sweep.
        self.sweep = SWEEP
        self._client: aioredis.Redis | None = None
        self._sentinel: Sentinel | None = None
        self._script: Any = None

    async def start(self) -> None:
        if self._client is not None:
            return
        options: dict[str, Any] = {
            # No socket timeout: every call already runs under the store
            # timeout (guarded_apply, guarded_maintain, the ping below), and
            # redis-py drops a connection whose call is cancelled. With one,
            # redis-py would wrap every send in asyncio.wait_for: a task per
            # command, a tenth of the exporter's time per Redis batch.
            "socket_timeout": None,
            "socket_connect_timeout": self.timeout,
            "retry_on_timeout": False,
            "health_check_interval": 30,
        }
        try:
            if self.url.startswith(SENTINEL_SCHEME + "://"):
                self._sentinel, self._client = self._sentinel_client(
                    SentinelURL.parse(self.url), options
                )
            else:
                self._client = aioredis.Redis.from_url(self.url, **options)
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL: {exc}") from None
        # redis-py's Script calls EVALSHA and loads the script on NOSCRIPT
        # (a restarted Redis, a new master after a failover).
        self._script = self._client.register_script(BATCH_SCRIPT)
        try:
            async with asyncio.timeout(self.timeout):
                await self._client.ping()
        except TimeoutError:
            self._failed("connect", "timed out")
        except RedisError as exc:
            # Start anyway, marked down: the store is retried every second and
            # events are counted meanwhile.
            self._failed("connect", str(exc))

    @staticmethod
    def _sentinel_client(
        url: SentinelURL, options: dict[str, Any]
    ) -> tuple[Sentinel, aioredis.Redis]:
        timeout = options["socket_connect_timeout"]
        # The password guards the sentinels too, as in Bitnami's chart
        # (auth.sentinel, on by default).
        sentinel_options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "password": url.password,
        }
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(url.sentinels), sentinel_kwargs=sentinel_options, password=url.password
        )
        # The pool asks the sentinels for the master whenever it connects, so
        # after a failover the next connection goes to the new master.
        client: aioredis.Redis = sentinel.master_for(url.master, db=url.db, **options)
        return sentinel, client

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        if self._sentinel is not None:
            sentinel, self._sentinel = self._sentinel, None
            for watcher in sentinel.sentinels:
                await watcher.aclose()

    async def apply(self, body: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        members = b"".join(
            message_digest(claim) if claim[2] != NO_CLAIM else _NO_MEMBER for claim in claims
        )
        kinds = bytes(claim[2] if claim[2] != NO_CLAIM else _NO_CLAIM for claim in claims)
        times = struct.pack(f"<{len(claims)}d", *(claim[3] for claim in claims))
        reply = await self._call(now, body_digest(body), members, kinds, times, "write")
        if reply[0] == 1:
            return Outcome(body_seen=True)
        return Outcome(body_seen=False, verdicts=list(struct.unpack(f"<{len(claims)}d", reply[1])))

    async def maintain(self, now: float) -> None:
        # A backlog (a burst of registrations a window ago) is worked off a
        # few sweeps per second rather than in one call that would outlast
        # the store timeout and be taken for a failure.
        for _ in range(MAINTENANCE_SWEEPS):
            reply = await self._call(now, b"", b"", b"", b"", "expire")
            if not reply[5]:
                break

    async def _call(
        self,
        now: float,
        body: bytes,
        members: bytes,
        kinds: bytes,
        times: bytes,
        operation: str,
    ) -> list[Any]:
        if self._client is None:
            raise StoreError("connect", "store is not open")
        args = [
            repr(now), repr(now - self.ttl), self.max_entries, self._key_ttl, self.sweep,
            body, members, kinds, times, *self._constants,
        ]  # fmt: skip
        try:
            reply: list[Any] = await self._script(self.keys, args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreError("connect", str(exc)) from exc
        except RedisError as exc:
            raise StoreError(operation, str(exc)) from exc
        if reply[0] == 0:
            self.pending = max(0, reply[2])
            self.evicted["expired"] += reply[3]
            self.evicted["capacity"] += reply[4]
        return reply
