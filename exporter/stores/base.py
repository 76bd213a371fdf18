"""The state store interface shared by the memory, SQLite and Redis stores."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from xxhash import xxh3_128_digest

from exporter.timing import Claim, Verdict

log = logging.getLogger(__name__)

# What a failed call was doing, as cloudmailin_state_errors_total counts it.
# Reads are part of the write that needs them (a batch's records are read
# and written in one step), and a start-up load that fails stops the
# exporter; so no operation is a read alone.
OPERATIONS = ("connect", "write", "expire")
EVICTION_REASONS = ("expired", "capacity")


def body_digest(body: bytes) -> bytes:
    """128 bits of XXH3: how the durable stores remember a request body, the
    same in every process and replica. Fifty times faster than BLAKE2b on a
    10 kB body, and it keeps the GIL below 64 kB (hashlib lets go of it
    above 2 kB, and every webhook then waited for the SQLite writer thread
    to hand it back); see timing.message_key on why a fast hash will do."""
    return xxh3_128_digest(body)


class StoreError(Exception):
    """A store call failed; `operation` is the label it is counted under."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(message)
        self.operation = operation


@dataclass(slots=True)
class Outcome:
    # The same request body was applied within the duplicate window: a
    # retried POST, none of whose events may count again.
    body_seen: bool
    verdicts: list[Verdict] = field(default_factory=list)


class StateStore(ABC):
    """Remembers messages' records and recently seen request bodies.

    Bounded by age (`ttl`, which is also the duplicate window) and by entries;
    every store counts its evictions, its failures and its pending messages.
    """

    # Whether calls can block on I/O and so must run under a timeout.
    remote = False

    def __init__(self, ttl: float, max_entries: int, timeout: float) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.timeout = timeout
        self.evicted = dict.fromkeys(EVICTION_REASONS, 0)
        self.errors = dict.fromkeys(OPERATIONS, 0)
        # Whether the last call answered: cloudmailin_state_store_up. Never
        # readiness: counting goes on while the store is down.
        self.up = True
        self.pending = 0

    async def start(self) -> None:
        """Open the store; raise ValueError with a one-line reason if it cannot be used."""

    async def stop(self) -> None:
        """Flush and close."""

    @abstractmethod
    async def apply(self, body: bytes, claims: Sequence[Claim], now: float) -> Outcome:
        """Atomically check the body (seen within the window: a retry) and
        apply every claim with `decide`. Each store remembers bodies by a
        digest of its choosing."""

    @abstractmethod
    async def maintain(self, now: float) -> None:
        """Expire old entries and refresh `pending`; reconnect if needed."""

    async def guarded_apply(
        self, body: bytes, claims: Sequence[Claim], now: float
    ) -> Outcome | None:
        """`apply`, or None when the store failed; counting must go on regardless."""
        if not self.remote:
            return await self.apply(body, claims, now)
        try:
            # asyncio.timeout, not wait_for: no task is created per request.
            async with asyncio.timeout(self.timeout):
                outcome = await self.apply(body, claims, now)
        except TimeoutError:
            self._failed("write", "timed out")
            return None
        except StoreError as exc:
            self._failed(exc.operation, str(exc))
            return None
        self.up = True
        return outcome

    async def guarded_maintain(self, now: float) -> None:
        if not self.remote:
            await self.maintain(now)
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.maintain(now)
        except TimeoutError:
            self._failed("expire", "timed out")
        except StoreError as exc:
            self._failed(exc.operation, str(exc))
        else:
            if not self.up:
                log.warning("state store answers again")
            self.up = True

    def _failed(self, operation: str, message: str) -> None:
        self.errors[operation] += 1
        if self.up:
            log.error("state store failed", extra={"operation": operation, "error": message})
        self.up = False
