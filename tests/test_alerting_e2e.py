"""End to end: exporter -> Prometheus (real rules) -> Alertmanager -> a receiver.

The rules are the shipped ones with windows shortened from minutes to
seconds, so a spike shows within a test's patience.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.rules import render_rules
from exporter.simulate import Simulator, Traffic
from tests.servers import Running, running_exporter
from tests.stack import Receiver, alertmanager, prometheus, receiver

FAST = MonitoringConfig(
    selector='job="cloudmailin-exporter"',
    rate_window="10s",
    ratio_window="30s",
    min_outcomes=20,
    bounce_ratio_for="3s",
    spike_window="10s",
    baseline_window="2m",
    bounce_spike_min_events=5,
    bounce_spike_for="3s",
    spam_spike_min_events=5,
    spam_spike_for="3s",
    retries_exhausted_window="30s",
    slow_delivery_window="30s",
    slow_delivery_for="3s",
    rejecting_window="30s",
    rejecting_for="3s",
    overflow_window="30s",
    overflow_for="3s",
    state_store_down_for="3s",
    down_for="30s",
    absent_for="1m",
)
NORMAL = {"rate": 60.0, "bounce_ratio": 0.005, "spam_ratio": 0.002, "delivery_delay": 0.5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Receiver]]:
    tmp = tmp_path_factory.mktemp("alerting")
    rules = tmp / "rules.yaml"
    rules.write_text(render_rules(FAST))
    with (
        running_exporter(domain_min_events=1) as exporter,
        receiver() as got,
        alertmanager(tmp, got.url) as am_url,
        prometheus(tmp, exporter.url.split("//")[1], rules, am_url) as prom,
    ):
        assert prom.wait_for_data('up{job="cloudmailin-exporter"} == 1', 20)
        yield exporter, got


class Drive:
    """Simulated traffic in a background thread, until its duration or stop()."""

    def __init__(self, exporter: Running, seconds: float, **traffic: float) -> None:
        settings = Traffic(url=exporter.url + "/events", duration=seconds, **{**NORMAL, **traffic})
        self.simulator = Simulator(settings)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.simulator.run()), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.simulator.stopped = True
        self.thread.join(15)


def test_normal_traffic_raises_no_alert(stack: tuple[Running, Receiver]) -> None:
    exporter, got = stack
    Drive(exporter, 20).thread.join()
    assert got.notifications == [], got.alert_names()
    assert exporter.value("cloudmailin_events_total", kind="registration", domain="gmail.com") > 0


def test_bounce_spike_reaches_the_receiver(stack: tuple[Running, Receiver]) -> None:
    exporter, got = stack
    traffic = Drive(exporter, 60, bounce_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinBounceSpike", 45), got.alert_names()
        assert "CloudMailinSpamRejectionSpike" not in got.alert_names()
    finally:
        traffic.stop()
    alert = next(
        a
        for note in got.notifications
        for a in note["alerts"]
        if a["labels"]["alertname"] == "CloudMailinBounceSpike"
    )
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["namespace"] == "e2e"
    assert alert["annotations"]["summary"] == "Bounces spiking (e2e/cloudmailin-exporter)"
    assert alert["annotations"]["runbook_url"].endswith("#cloudmailinbouncespike")


def test_spam_rejection_spike_reaches_the_receiver(stack: tuple[Running, Receiver]) -> None:
    exporter, got = stack
    # Let the bounce spike age out of the short windows first.
    time.sleep(5)
    traffic = Drive(exporter, 60, spam_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinSpamRejectionSpike", 45), got.alert_names()
    finally:
        traffic.stop()


def test_rules_file_used_here_is_the_shipped_one_with_other_windows() -> None:
    shipped = Path(__file__).resolve().parent.parent / "helm/cloudmailin-exporter/files/rules.yaml"
    assert render_rules(MonitoringConfig()) == shipped.read_text()
    assert render_rules(FAST) != shipped.read_text()
