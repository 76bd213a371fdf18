"""The traffic simulator against a real exporter: every event it sends is counted."""

from __future__ import annotations

import asyncio

import pytest

from exporter.events import KNOWN_KINDS
from exporter.simulate import Simulator, Traffic
from tests.servers import running_exporter


@pytest.mark.slow
def test_simulated_traffic_is_counted_exactly() -> None:
    with running_exporter(clock=None, domain_min_events=1) as exporter:
        traffic = Traffic(
            url=exporter.url + "/events",
            rate=200,
            duration=3,
            delivery_delay=0.3,
            bounce_ratio=0.1,
            spam_ratio=0.05,
            retries_exhausted_ratio=0.05,
            soft_bounce_ratio=0.1,
        )
        report = asyncio.run(Simulator(traffic).run())
        assert report.failed_requests == 0
        assert report.accepted == report.events
        assert report.rejected == report.duplicates == 0
        for kind in KNOWN_KINDS:
            counted = sum(
                s.value
                for f in exporter.registry.collect()
                if f.name == "cloudmailin_events"
                for s in f.samples
                if s.labels["kind"] == kind
            )
            assert counted == report.sent.get(kind, 0), kind
        for kind in ("registration", "dispatch", "delivery", "bounce", "suppressed", "open"):
            assert report.sent[kind] > 0, kind
        assert report.sent["registration"] == pytest.approx(600, rel=0.1)
        # Most deliveries were timed against their registration.
        timed = exporter.value("cloudmailin_time_to_delivery_seconds_count", domain="gmail.com")
        assert timed > 0
        assert exporter.value("cloudmailin_unmatched_events_total", kind="delivery") == 0
        domains = {
            s.labels["domain"]
            for f in exporter.registry.collect()
            if f.name == "cloudmailin_events"
            for s in f.samples
        }
        assert "xn--bcher-kva.example" in domains


def test_simulator_reports_refused_requests() -> None:
    with running_exporter(clock=None, bearer_token="right") as exporter:
        traffic = Traffic(url=exporter.url + "/events", rate=50, duration=1, token="wrong")
        report = asyncio.run(Simulator(traffic).run())
        assert report.requests > 0
        assert report.failed_requests == report.requests
        assert report.accepted == 0
