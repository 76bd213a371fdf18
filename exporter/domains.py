"""Recipient address to `domain` label value, under a cardinality budget."""

from __future__ import annotations

from typing import Final

import idna

INVALID: Final = "invalid"
OTHER: Final = "other"
# RFC 1035: a domain name is at most 253 characters in text form.
MAX_DOMAIN_LENGTH: Final = 253
# Distinct not-yet-admitted domains whose sightings are counted at once.
# Past it the tally starts over: a domain that cannot reach the admission
# threshold among 10k others is not one an operator needs a series for.
CANDIDATE_CAP: Final = 10_000
# Normalised spellings remembered; cleared when full so memory stays flat
# under a flood of random domains.
CACHE_CAP: Final = 20_000


def normalise(domain: str) -> str:
    """Lower-case ASCII (IDNA 2008 with UTS 46 mapping) form of a domain.

    Raises ValueError when it is not a usable domain name.
    """
    text = domain.strip().rstrip(".")
    if not text or len(text) > MAX_DOMAIN_LENGTH:
        raise ValueError("empty or too long")
    if text.isascii():
        text = text.lower()
        labels = text.split(".")
        if all(label and len(label) <= 63 for label in labels) and all(
            c.isalnum() or c in "-." for c in text
        ):
            if any(label.startswith("xn--") for label in labels):
                # Punycode must decode, or it is garbage dressed as IDNA.
                idna.decode(text)
            return text
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(str(exc)) from None
    if len(encoded) > MAX_DOMAIN_LENGTH:
        raise ValueError("too long")
    return encoded


class DomainGuard:
    """Decides each recipient's `domain` label value, keeping their number bounded.

    The allow-list is always admitted; other domains are admitted from their
    `min_events`-th event on while fewer than `max_domains` are; the rest is
    `other`, and addresses that do not parse are `invalid`.
    """

    def __init__(self, max_domains: int, allowlist: tuple[str, ...], min_events: int) -> None:
        self.max_domains = max_domains
        self.min_events = min_events
        self.allowlist = frozenset(normalise(d) for d in allowlist)
        self.admitted: set[str] = set()
        self.overflow_events = 0
        # raw domain text -> decided label (admitted, allow-listed, overflow
        # or invalid); undecided domains are absent so they keep counting.
        # The ingest loop reads it directly for known domains.
        self.decided: dict[str, str] = {}
        self._candidates: dict[str, int] = {}

    @property
    def labels(self) -> frozenset[str]:
        return self.allowlist | self.admitted

    def label(self, recipient: str) -> str:
        _, at_sign, raw = recipient.rpartition("@")
        if not at_sign:
            return INVALID
        decided = self.decided.get(raw)
        if decided is not None:
            if decided is OTHER:
                self.overflow_events += 1
            return decided
        return self._decide(raw)

    def _decide(self, raw: str) -> str:
        try:
            domain = normalise(raw)
        except ValueError:
            return self._remember(raw, INVALID)
        if domain in self.allowlist or domain in self.admitted:
            return self._remember(raw, domain)
        if len(self.admitted) >= self.max_domains:
            self.overflow_events += 1
            return self._remember(raw, OTHER)
        seen = self._candidates.get(domain, 0) + 1
        if seen >= self.min_events:
            self._candidates.pop(domain, None)
            self.admitted.add(domain)
            return self._remember(raw, domain)
        if len(self._candidates) >= CANDIDATE_CAP:
            self._candidates.clear()
        self._candidates[domain] = seen
        return OTHER

    def _remember(self, raw: str, label: str) -> str:
        if len(self.decided) >= CACHE_CAP:
            self.decided.clear()
        # Interned so the hot path can test `is OTHER`.
        self.decided[raw] = OTHER if label == OTHER else label
        return label
