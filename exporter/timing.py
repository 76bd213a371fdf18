"""Registration-to-milestone timing and duplicate recognition.

`decide` is the one statement of what an event means for its message. The
record table (stores/table.py), which the memory and SQLite stores keep, is
its one fast version, and the Redis store's Lua script restates it by
necessity; differential tests hold both to it.

A verdict is one float, because it is computed for every event of every
batch: seconds since registration (>= 0) to observe, or one of the codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from xxhash import xxh3_64_intdigest

from exporter.events import KIND_INDEX, ONCE_PER_MESSAGE, TERMINAL

REGISTRATION_BIT: Final = 1 << KIND_INDEX["registration"]
ONCE_BITS: Final = sum(1 << KIND_INDEX[k] for k in ONCE_PER_MESSAGE)
TERMINAL_BITS: Final = sum(1 << KIND_INDEX[k] for k in TERMINAL)

# Counted, nothing to observe (a registration, a repeat of a repeatable kind,
# an interval made negative by clock skew).
NOTHING: Final = -1.0
# A second copy of a once-per-message event: not counted again.
DUPLICATE: Final = -2.0
# To be timed, but its message's registration was never seen.
UNMATCHED: Final = -3.0

# One valid event as the stores take it: (message_id, recipient, kind index,
# event time, kind). A plain tuple: one is built per event. The index is
# NO_CLAIM for an event that says nothing about a message (no message id, or
# a kind outside the catalogue): its verdict is NOTHING and no record changes.
Claim = tuple[str | None, str, int, float, str]
NO_CLAIM: Final = -1
Verdict = float


def message_key(claim: Claim) -> int:
    """64 bits of XXH3 of a claim's message id and recipient, unsigned: the
    key the durable stores keep its record under, so that neither is stored
    in clear.

    XXH3, not a cryptographic hash: every event of every webhook needs one,
    and BLAKE2b through hashlib cost five times as long. An unkeyed digest of
    an address, of whatever function, hides it from a look at the store, not
    from someone who hashes a list of guesses; and crafting two messages of
    one key takes the webhook's credentials, which could send any event.
    """
    return xxh3_64_intdigest(f"{claim[0]}\x00{claim[1]}".encode())


def message_digest(claim: Claim) -> bytes:
    """`message_key` as 8 bytes, big-endian."""
    return message_key(claim).to_bytes(8, "big")


@dataclass(slots=True)
class Record:
    """All that is kept of one message for one recipient."""

    created: float
    registered_at: float | None = None
    # Bit i set: an event of KNOWN_KINDS[i] was seen for this message.
    seen: int = 0

    @property
    def terminal(self) -> bool:
        return bool(self.seen & TERMINAL_BITS)

    @property
    def pending(self) -> bool:
        return self.registered_at is not None and not self.terminal


def decide(record: Record, claim: Claim) -> Verdict:
    """Apply one event to its message's record (in place) and say what it means.

    The claim's index is a kind's (not NO_CLAIM): stores skip the others.
    """
    bit = 1 << claim[2]
    first = not record.seen & bit
    if not first and bit & ONCE_BITS:
        return DUPLICATE
    if bit == REGISTRATION_BIT:
        # A registration that arrives after later events of its message
        # (concurrent batches) is counted but starts no clock: the events
        # it should have timed are already gone.
        if record.seen == 0:
            record.registered_at = claim[3]
        record.seen |= bit
        return NOTHING
    record.seen |= bit
    if not first:
        return NOTHING
    if record.registered_at is None:
        return UNMATCHED
    elapsed = claim[3] - record.registered_at
    # A negative interval is clock skew between CloudMailin's stamps;
    # observing it would put garbage in the lowest bucket.
    return elapsed if elapsed >= 0 else NOTHING
