"""One webhook batch: validate each event, recognise duplicates, time, count."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from exporter.domains import DomainGuard
from exporter.events import KIND_INDEX, Event, KindCatalogue, parse_event
from exporter.metrics import Clock, ExporterMetrics
from exporter.stores.base import StateStore
from exporter.timing import Claim, Verdict

# Expiry runs from the request path at most this often (and from the
# background loop when idle), so a fake clock in tests drives it too.
MAINTENANCE_INTERVAL = 1.0


@dataclass(slots=True)
class Summary:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "rejected": self.rejected, "duplicates": self.duplicates}


class Ingest:
    def __init__(
        self,
        metrics: ExporterMetrics,
        kinds: KindCatalogue,
        domains: DomainGuard,
        store: StateStore,
        clock: Clock,
    ) -> None:
        self.metrics = metrics
        self.kinds = kinds
        self.domains = domains
        self.store = store
        self.clock = clock
        self._next_maintenance = 0.0

    async def maintain(self) -> None:
        now = self.clock()
        self._next_maintenance = now + MAINTENANCE_INTERVAL
        await self.store.guarded_maintain(now)

    async def batch(self, body: bytes, raw_events: list[object]) -> Summary:
        now = self.clock()
        if now >= self._next_maintenance:
            await self.maintain()
        summary = Summary()
        metrics = self.metrics
        rejected = metrics.rejected
        valid: list[Event] = []
        claims: list[Claim] = []
        # Position in `valid` of the event each claim belongs to.
        claimed: list[int] = []
        kinds = self.kinds
        for raw in raw_events:
            event = parse_event(raw, kinds)
            if type(event) is str:
                rejected[event] += 1
                summary.rejected += 1
                continue
            assert isinstance(event, Event)
            if event.at is None:
                event.at = now
            index = KIND_INDEX.get(event.kind)
            if event.message_id is not None and index is not None:
                claimed.append(len(valid))
                claims.append(Claim(event.message_id, event.recipient, index, event.at))
            valid.append(event)
        if not valid:
            return summary
        body_key = hashlib.blake2b(body, digest_size=16).digest()
        outcome = await self.store.guarded_apply(body_key, claims, now)
        if outcome is not None and outcome.body_seen:
            for event in valid:
                metrics.duplicates[event.kind] = metrics.duplicates.get(event.kind, 0) + 1
            summary.duplicates = len(valid)
            return summary
        verdicts: list[Verdict | None] = [None] * len(valid)
        if outcome is not None:
            for position, claimed_verdict in zip(claimed, outcome.verdicts, strict=True):
                verdicts[position] = claimed_verdict
        label = self.domains.label
        count = metrics.count_event
        for event, verdict in zip(valid, verdicts, strict=True):
            if verdict is not None and verdict.duplicate:
                metrics.duplicates[event.kind] += 1
                summary.duplicates += 1
                continue
            domain = label(event.recipient)
            count(event.kind, domain)
            summary.accepted += 1
            if verdict is not None:
                self._time(event, domain, verdict)
        if summary.accepted:
            metrics.last_event = now
        return summary

    def _time(self, event: Event, domain: str, verdict: Verdict) -> None:
        metrics = self.metrics
        if verdict.unmatched:
            metrics.unmatched[event.kind] += 1
            return
        elapsed = verdict.since_registration
        if elapsed is None:
            return
        metrics.since_registration[event.kind].observe(elapsed, event.message_id, event.at)
        if event.kind == "delivery":
            hist = metrics.to_delivery.get(domain)
            if hist is None:
                metrics.add_domain(domain)
                hist = metrics.to_delivery[domain]
            hist.observe(elapsed, event.message_id, event.at)
