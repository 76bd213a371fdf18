"""Realistic CloudMailin status-event traffic, posted to an exporter.

Messages are registered at a steady rate and then follow what real mail
does: most are dispatched and delivered after a log-normal delay, some bounce,
soft-bounce and are delivered later, run out of retries, or are suppressed as
spam before sending; delivered ones may be opened and clicked. Tests, demos
and the benchmark all drive the exporter with it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

# Weights of recipient domains: the big mailbox providers take most mail,
# then a tail of smaller ones, as in a typical B2C list.
DEFAULT_DOMAINS = (
    "gmail.com:40,outlook.com:20,yahoo.com:12,icloud.com:8,gmx.de:5,"
    "web.de:4,orange.fr:4,example.org:3,example.net:2,bücher.example:2"
)


class Traffic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field("http://127.0.0.1:9878/events", description="Webhook URL to post to.")
    rate: float = Field(20.0, gt=0, le=100_000, description="New messages per second.")
    duration: float = Field(30.0, gt=0, le=86_400, description="Seconds to run.")
    bounce_ratio: float = Field(0.01, ge=0, le=1, description="Share of messages that bounce.")
    soft_bounce_ratio: float = Field(
        0.03, ge=0, le=1, description="Share that soft-bounce first, then are delivered."
    )
    spam_ratio: float = Field(
        0.005, ge=0, le=1, description="Share suppressed (spam check) before sending."
    )
    retries_exhausted_ratio: float = Field(
        0.002, ge=0, le=1, description="Share that run out of retries."
    )
    open_ratio: float = Field(0.4, ge=0, le=1, description="Share of delivered mail opened.")
    click_ratio: float = Field(0.25, ge=0, le=1, description="Share of opened mail clicked.")
    delivery_delay: float = Field(
        2.0, gt=0, description="Median seconds from registration to delivery."
    )
    domains: str = Field(DEFAULT_DOMAINS, description="Recipient domains as name:weight,...")
    batch_size: int = Field(100, ge=1, le=10_000, description="Most events in one POST.")
    tick: float = Field(0.2, gt=0, le=10, description="Seconds between POST rounds.")
    username: str | None = Field(None, description="HTTP Basic user.")
    password: str | None = Field(None, description="HTTP Basic password.")
    token: str | None = Field(None, description="Bearer token.")
    seed: int = Field(1, description="Random seed, for repeatable traffic.")


@dataclass
class Report:
    sent: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    failed_requests: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    # Events still scheduled when the run ended (deliveries not yet due...).
    unsent: int = 0

    @property
    def events(self) -> int:
        return sum(self.sent.values())


class Simulator:
    def __init__(self, traffic: Traffic) -> None:
        self.t = traffic
        self.rng = random.Random(traffic.seed)  # noqa: S311 - simulated traffic, not secrets
        self.queue: list[tuple[float, int, dict[str, Any]]] = []
        self.order = itertools.count()
        names, weights = [], []
        for item in traffic.domains.split(","):
            name, _, weight = item.strip().partition(":")
            names.append(name)
            weights.append(float(weight or 1))
        self.domains = names
        self.weights = weights
        # Set from another thread to end a run early.
        self.stopped = False

    def _at(self, when: float, kind: str, message_id: str, recipient: str) -> None:
        event = {"kind": kind, "recipient": recipient, "message_id": message_id, "details": {}}
        heapq.heappush(self.queue, (when, next(self.order), event))

    def _delay(self, median: float) -> float:
        # Log-normal: most mail is quick, a long tail is slow.
        return median * math.exp(self.rng.gauss(0, 0.6))

    def new_message(self, now: float) -> None:
        t, rng = self.t, self.rng
        message_id = str(uuid.UUID(int=rng.getrandbits(128)))
        user = f"user{rng.getrandbits(32)}"
        recipient = f"{user}@{rng.choices(self.domains, self.weights)[0]}"
        self._at(now, "registration", message_id, recipient)
        fate = rng.random()
        if fate < t.spam_ratio:
            self._at(now, "suppressed", message_id, recipient)
            return
        fate -= t.spam_ratio
        self._at(now + 0.05 * t.delivery_delay, "dispatch", message_id, recipient)
        if fate < t.bounce_ratio:
            self._at(now + self._delay(t.delivery_delay), "bounce", message_id, recipient)
            return
        fate -= t.bounce_ratio
        if fate < t.retries_exhausted_ratio:
            self._at(now + 0.5 * t.delivery_delay, "soft_bounce", message_id, recipient)
            self._at(now + 3 * t.delivery_delay, "retries_exhausted", message_id, recipient)
            return
        fate -= t.retries_exhausted_ratio
        delivered = now + self._delay(t.delivery_delay)
        if fate < t.soft_bounce_ratio:
            self._at(now + 0.5 * t.delivery_delay, "soft_bounce", message_id, recipient)
            delivered += 2 * t.delivery_delay
        self._at(delivered, "delivery", message_id, recipient)
        if rng.random() < t.open_ratio:
            opened = delivered + self._delay(3 * t.delivery_delay)
            self._at(opened, "open", message_id, recipient)
            if rng.random() < t.click_ratio:
                self._at(opened + self._delay(t.delivery_delay), "click", message_id, recipient)

    def due(self, now: float) -> list[dict[str, Any]]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    async def run(self, client: httpx.AsyncClient | None = None) -> Report:
        t = self.t
        report = Report()
        auth: httpx.Auth | None = (
            httpx.BasicAuth(t.username, t.password or "") if t.username else None
        )
        headers = {"authorization": f"Bearer {t.token}"} if t.token else {}
        own = client is None
        client = client or httpx.AsyncClient(timeout=10)
        started = time.monotonic()
        owed = 0.0
        try:
            while (now := time.monotonic()) - started < t.duration and not self.stopped:
                owed += t.rate * t.tick
                while owed >= 1:
                    self.new_message(now)
                    owed -= 1
                events = self.due(now)
                for i in range(0, len(events), t.batch_size):
                    await self._post(client, events[i : i + t.batch_size], auth, headers, report)
                await asyncio.sleep(max(0.0, t.tick - (time.monotonic() - now)))
        finally:
            if own:
                await client.aclose()
        report.unsent = len(self.queue)
        return report

    async def _post(
        self,
        client: httpx.AsyncClient,
        events: list[dict[str, Any]],
        auth: httpx.Auth | None,
        headers: dict[str, str],
        report: Report,
    ) -> None:
        report.requests += 1
        try:
            response = await client.post(
                self.t.url,
                json={"events": events},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers=headers,
            )
        except httpx.HTTPError:
            report.failed_requests += 1
            return
        if response.status_code != 200:
            report.failed_requests += 1
            return
        summary = response.json()
        report.accepted += summary["accepted"]
        report.rejected += summary["rejected"]
        report.duplicates += summary["duplicates"]
        report.sent.update(e["kind"] for e in events)


def simulate(traffic: Traffic) -> Report:
    return asyncio.run(Simulator(traffic).run())
