"""CloudMailin's event payload: the kind catalogue and per-event validation.

Validation is hand-written rather than a pydantic model per event: it runs
for every event of every batch, and a rejected event must yield one of a
small, fixed set of reasons that become a label value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

log = logging.getLogger(__name__)

GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "lifecycle": ("registration", "dispatch", "delivery"),
    "throttling": ("rate_limit",),
    "failure": (
        "bounce",
        "soft_bounce",
        "dispatch_bounce",
        "dispatch_soft_bounce",
        "retries_exhausted",
        "error",
        "suppressed",
        "blocked",
        "spamd",
    ),
    "engagement": ("open", "read", "click"),
    "feedback": ("complaint", "auto_reply", "bounce_reply"),
    "internal": ("process",),
}
# The order is part of the shared-store format (a kind's bit in a message's
# record): append new kinds, never reorder.
KNOWN_KINDS: Final[tuple[str, ...]] = tuple(k for kinds in GROUPS.values() for k in kinds)
KIND_INDEX: Final[dict[str, int]] = {kind: i for i, kind in enumerate(KNOWN_KINDS)}
ALIASES: Final[dict[str, str]] = {"rate_limited": "rate_limit"}
CODES: Final[dict[int, str]] = {
    0: "registration",
    1: "dispatch",
    3: "rate_limit",
    5: "dispatch_bounce",
    6: "dispatch_soft_bounce",
    10: "delivery",
    11: "bounce",
    12: "soft_bounce",
    20: "open",
    21: "click",
    22: "read",
    30: "complaint",
    40: "retries_exhausted",
    50: "blocked",
    60: "auto_reply",
    1000: "process",
    1001: "spamd",
}
TERMINAL: Final[frozenset[str]] = frozenset(
    ("delivery", "bounce", "dispatch_bounce", "retries_exhausted", "suppressed", "blocked", "spamd")
)
ONCE_PER_MESSAGE: Final[frozenset[str]] = TERMINAL | {"registration", "dispatch"}
OTHER: Final = "other"
KIND_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Distinct unknown numeric kinds logged (each once); past that they are still
# counted as `other`, silently. A handful says what an operator needs to know
# (CloudMailin added a code); thousands would only be a sender's noise.
MAX_LOGGED_CODES: Final = 32

# RFC 5321 caps a path at 256 octets; anything longer is not an address.
MAX_RECIPIENT_LENGTH: Final = 320
# CloudMailin ids are UUIDs (36 characters); 255 leaves room for other
# formats without letting an attacker store kilobytes per message.
MAX_MESSAGE_ID_LENGTH: Final = 255

REJECT_REASONS: Final[tuple[str, ...]] = (
    "not_an_object",
    "invalid_kind",
    "invalid_recipient",
    "invalid_message_id",
    "invalid_timestamp",
)


@dataclass(slots=True)
class Event:
    kind: str
    recipient: str
    message_id: str | None
    at: float | None


class KindCatalogue:
    """Maps what CloudMailin sends to a bounded set of kind label values."""

    def __init__(self, max_new_kinds: int) -> None:
        self._max_new = max_new_kinds
        # Every name seen so far and its label; the ingest loop reads it
        # directly for names it has seen.
        self.resolved: dict[str, str] = {k: k for k in KNOWN_KINDS} | ALIASES
        self._new: set[str] = set()
        self._codes_logged: set[int] = set()

    @property
    def new_kinds(self) -> frozenset[str]:
        return frozenset(self._new)

    def resolve(self, raw: object) -> str | None:
        """The label for a kind, or None when it is malformed.

        `raw` is the JSON value as parsed: a name (str), or a numeric code as
        an int or an integral float (`10`, `10.0`, `1e1` are all delivery);
        unknown codes are `other`. Booleans, fractions and anything else are
        malformed.
        """
        if type(raw) is str:
            kind = self.resolved.get(raw)
            if kind is not None:
                return kind
            if KIND_PATTERN.fullmatch(raw) is None:
                return None
            return self._admit(raw)
        if type(raw) is float:
            # JSON has one number type: 10, 10.0 and 1e1 are the same code.
            # A fractional part (or an infinity) makes it no code at all.
            if not raw.is_integer():
                return None
            raw = int(raw)
        if type(raw) is int:
            named = CODES.get(raw)
            if named is None:
                return self._admit_code(raw)
            return named
        return None

    def _admit(self, kind: str) -> str:
        if len(self._new) < self._max_new:
            self._new.add(kind)
            self.resolved[kind] = kind
            log.warning("new event kind counted under its own name", extra={"kind": kind})
            return kind
        # Remember the verdict so the log says it once and the label set
        # stays fixed from here on.
        self.resolved[kind] = OTHER
        log.warning("new event kind over the limit counted as other", extra={"kind": kind})
        return OTHER

    def _admit_code(self, code: int) -> str:
        # Kept apart from `resolved` (whose keys are kind names as sent) and
        # bounded: any JSON number is a code, so a sender can spell millions.
        if code not in self._codes_logged and len(self._codes_logged) < MAX_LOGGED_CODES:
            self._codes_logged.add(code)
            log.warning("unknown numeric event kind counted as other", extra={"code": code})
        return OTHER


def parse_time(raw: object) -> float:
    """An event timestamp (RFC 3339 text or Unix seconds) as Unix seconds.

    Raises ValueError for anything else, including times outside years
    1970-9999.
    """
    if type(raw) is int or type(raw) is float:
        value = float(raw)
    elif type(raw) is str:
        text = raw.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("timestamp without a time zone")
        value = moment.timestamp()
    else:
        raise ValueError("timestamp must be text or a number")
    if not 0.0 <= value < 253_402_300_800.0:
        raise ValueError("timestamp out of range")
    return value


def parse_event(raw: object, kinds: KindCatalogue) -> Event | str:
    """A validated event, or the reason it was rejected."""
    if type(raw) is not dict:
        return "not_an_object"
    kind = kinds.resolve(raw.get("kind"))
    if kind is None:
        return "invalid_kind"
    recipient = raw.get("recipient")
    if type(recipient) is not str or not recipient or len(recipient) > MAX_RECIPIENT_LENGTH:
        return "invalid_recipient"
    message_id = raw.get("message_id")
    if message_id is not None and (
        type(message_id) is not str or not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH
    ):
        return "invalid_message_id"
    at = None
    stamp = raw.get("timestamp")
    if stamp is None:
        stamp = raw.get("created_at")
    if stamp is not None:
        try:
            at = parse_time(stamp)
        except (ValueError, OverflowError):
            return "invalid_timestamp"
    return Event(kind, recipient, message_id, at)
