"""Registration-to-milestone timing and duplicate recognition.

`decide` is the one place that says what an event means for its message;
every state store applies it, atomically in its own way, to the message's
record.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.events import KIND_INDEX, ONCE_PER_MESSAGE, TERMINAL

REGISTRATION_BIT = 1 << KIND_INDEX["registration"]
ONCE_BITS = sum(1 << KIND_INDEX[k] for k in ONCE_PER_MESSAGE)
TERMINAL_BITS = sum(1 << KIND_INDEX[k] for k in TERMINAL)


@dataclass(slots=True)
class Claim:
    """What one event says about its message (message id and recipient)."""

    message_id: str
    recipient: str
    kind_index: int
    at: float


@dataclass(slots=True)
class Verdict:
    duplicate: bool = False
    # Seconds from registration to this event, when it is the first event of
    # its kind for a message whose registration was seen first.
    since_registration: float | None = None
    unmatched: bool = False


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
    """Apply one event to its message's record (in place) and say what it means."""
    bit = 1 << claim.kind_index
    first = not record.seen & bit
    if not first and bit & ONCE_BITS:
        return Verdict(duplicate=True)
    if bit == REGISTRATION_BIT:
        # A registration that arrives after later events of its message
        # (concurrent batches) is counted but starts no clock: the events
        # it should have timed are already gone.
        if record.seen == 0:
            record.registered_at = claim.at
        record.seen |= bit
        return Verdict()
    record.seen |= bit
    if not first:
        return Verdict()
    if record.registered_at is None:
        return Verdict(unmatched=True)
    elapsed = claim.at - record.registered_at
    # A negative interval is clock skew between CloudMailin's stamps;
    # observing it would put garbage in the lowest bucket.
    return Verdict(since_registration=elapsed if elapsed >= 0 else None)
