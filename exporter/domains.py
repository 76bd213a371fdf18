"""Recipient address to `domain` label value, under a cardinality budget."""

from __future__ import annotations

import email.errors
import email.policy
import functools
import re
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
# Recipients in another spelling than a bare `user@domain` whose parse is
# remembered. The standard parser takes ~0.1 ms per address, and CloudMailin
# posts several events (registration, dispatch, delivery, open...) for each
# recipient; a flood of distinct spellings only costs the parse.
PARSED_CACHE_CAP: Final = 4096
# What may not appear in the text after the first @ of a bare `user@domain`:
# RFC 5322 specials other than ".", another "@", and white space. With any of
# them the recipient is parsed as RFC 5322 (`<...>`, comments, groups, lists).
# The domain guard's cache keys never contain them, which is what lets the
# ingest loop look the text after the @ up directly.
NOT_BARE: Final = re.compile(r'[\s@<>()\[\]:;,"\\]')
_HEADER: Final = email.policy.default.header_factory


def address_domain(recipient: str) -> str | None:
    """The domain of a recipient address as written (not yet normalised), or None.

    A bare `user@domain` is split at its @; the local part is not checked,
    since only the domain becomes a label. Any other spelling
    (`<user@example.net>`, `"Name" <user@example.net>`, comments, a quoted
    local part holding an @, a group) is read by the standard library's
    RFC 5322 parser and must hold exactly one address, with a domain and no
    parse error. Text without an @ has no domain.
    """
    _, at, rest = recipient.partition("@")
    if not at:
        return None
    if NOT_BARE.search(rest) is None:
        return rest
    return _parsed_domain(recipient)


@functools.lru_cache(maxsize=PARSED_CACHE_CAP)
def _parsed_domain(recipient: str) -> str | None:
    try:
        header = _HEADER("to", recipient)
        addresses = header.addresses
        domain = addresses[0].domain if len(addresses) == 1 else ""
    except Exception:
        # The stdlib header parser raises ValueError, IndexError, TypeError,
        # AttributeError and UnboundLocalError on some malformed input (found
        # by fuzzing it on Python 3.11); for us each means "no address".
        return None
    if not domain or NOT_BARE.search(domain) is not None:
        # No domain, or a domain literal such as [192.0.2.1]: no label.
        return None
    if any(not isinstance(d, email.errors.ObsoleteHeaderDefect) for d in header.defects):
        # Obsolete syntax (a source route) is still an address; anything
        # else the parser had to guess at is not one we count under a domain.
        return None
    return domain


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
        # domain text as written (address_domain's, so never holding a
        # NOT_BARE character) -> decided label (admitted, allow-listed,
        # overflow or invalid); undecided domains are absent so they keep
        # counting. The ingest loop reads it directly for known domains.
        self.decided: dict[str, str] = {}
        self._candidates: dict[str, int] = {}

    @property
    def labels(self) -> frozenset[str]:
        return self.allowlist | self.admitted

    def label(self, recipient: str) -> str:
        """The `domain` label value for a recipient address (see `address_domain`)."""
        # The cache's keys are all bare domain text (address_domain never
        # yields anything else), so a hit on the text after the first @ can
        # only be a bare address: the ingest loop takes the same short cut.
        decided = self.decided.get(recipient.partition("@")[2])
        if decided is None:
            raw = address_domain(recipient)
            if raw is None:
                return INVALID
            decided = self.decided.get(raw)
            if decided is None:
                return self._decide(raw)
        if decided is OTHER:
            self.overflow_events += 1
        return decided

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
