"""End to end: exporter -> Prometheus (the chart's rules) -> Alertmanager -> a receiver.

The rules are the chart's, rendered by the Helm engine for release cm in
namespace mail with every window shortened from minutes to seconds, so a
spike shows within a test's patience; Prometheus scrapes the exporter as the
ServiceMonitor would name it. The baseline alerts keep their warm-up guard:
the first minute of traffic raises nothing.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.monitoring.config import MonitoringConfig, camel
from exporter.monitoring.rules import render_rules
from exporter.simulate import Simulator, Traffic
from tests.chart import by_kind, install
from tests.servers import Running, running_exporter
from tests.stack import Prometheus, Receiver, alertmanager, prometheus, receiver

FAST = MonitoringConfig(
    rate_window="10s",
    ratio_window="30s",
    min_outcomes=20,
    bounce_ratio_for="3s",
    spike_window="10s",
    baseline_window="1m",
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
    engagement_window="10s",
    engagement_min_expected_opens=5,
    engagement_for="3s",
    evicted_window="30s",
    unmatched_window="30s",
    down_for="30s",
    absent_for="1m",
)
NORMAL = {"rate": 60.0, "bounce_ratio": 0.005, "spam_ratio": 0.002, "delivery_delay": 0.5}


# What the chart's ServiceMonitor and Service make of release cm in namespace mail.
RELEASE = {"job": "cm-cloudmailin-exporter", "namespace": "mail"}


def chart_rules(tmp: Path, config: MonitoringConfig) -> Path:
    """The chart's PrometheusRule groups for release cm in namespace mail, with
    every knob of `config` but the selector set from the values."""
    knobs = config.model_dump(exclude={"selector"})
    values = {
        "prometheusRule": {"enabled": True, "config": {camel(k): v for k, v in knobs.items()}}
    }
    (rule,) = by_kind(install(values, RELEASE["namespace"]))["PrometheusRule"]
    path = tmp / "chart-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Running, Receiver, Prometheus]]:
    tmp = tmp_path_factory.mktemp("alerting")
    rules = chart_rules(tmp, FAST)
    with (
        running_exporter(domain_min_events=1) as exporter,
        receiver() as got,
        alertmanager(tmp, got.url) as am_url,
        prometheus(tmp, exporter.url.split("//")[1], rules, am_url, **RELEASE) as prom,
    ):
        assert prom.wait_for_data('up{job="cm-cloudmailin-exporter"} == 1', 20)
        yield exporter, got, prom


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


def fired(got: Receiver, name: str) -> dict[str, Any]:
    return next(
        a for note in got.notifications for a in note["alerts"] if a["labels"]["alertname"] == name
    )


def test_warm_up_and_normal_traffic_raise_no_alert(
    stack: tuple[Running, Receiver, Prometheus],
) -> None:
    """A fresh install: through the whole first baseline window and past it, steady
    traffic raises nothing, and by its end the history is long enough to judge."""
    exporter, got, prom = stack
    Drive(exporter, 75).thread.join()
    assert got.notifications == [], got.alert_names()
    assert exporter.value("cloudmailin_events_total", kind="registration", domain="gmail.com") > 0
    history = prom.query(
        f"namespace_job:cloudmailin_baseline_history:ratio >= {FAST.baseline_min_history}"
    )
    assert [h["metric"]["job"] for h in history] == ["cm-cloudmailin-exporter"]


def test_bounce_spike_reaches_the_receiver(stack: tuple[Running, Receiver, Prometheus]) -> None:
    exporter, got, _ = stack
    traffic = Drive(exporter, 60, bounce_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinBounceSpike", 45), got.alert_names()
        assert "CloudMailinSpamRejectionSpike" not in got.alert_names()
    finally:
        traffic.stop()
    alert = fired(got, "CloudMailinBounceSpike")
    labels, annotations = alert["labels"], alert["annotations"]
    assert labels["severity"] == "warning"
    assert labels["namespace"] == "mail"
    assert annotations["summary"] == "Hard bounces spiking (mail/cm-cloudmailin-exporter)"
    assert annotations["runbook_url"].endswith("docs/runbooks.md#cloudmailinbouncespike")
    # The measured share and the baseline it was held against, both as percentages.
    assert re.fullmatch(
        r"[0-9.]+% of the mail sent over the last 10s hard-bounced: more than 3 times the "
        r"share over the 1m before, [0-9.]+%, with at least 5 hard bounces\.",
        annotations["description"],
    ), annotations["description"]


def test_spam_rejection_spike_reaches_the_receiver(
    stack: tuple[Running, Receiver, Prometheus],
) -> None:
    exporter, got, _ = stack
    # Let the bounce spike age out of the short windows first.
    time.sleep(5)
    traffic = Drive(exporter, 60, spam_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinSpamRejectionSpike", 45), got.alert_names()
    finally:
        traffic.stop()


def test_opens_collapsing_reach_the_receiver(stack: tuple[Running, Receiver, Prometheus]) -> None:
    exporter, got, _ = stack
    traffic = Drive(exporter, 60, open_ratio=0.0, click_ratio=0.0)
    try:
        assert got.wait_for("CloudMailinOpenRateDrop", 45), got.alert_names()
    finally:
        traffic.stop()
    annotations = fired(got, "CloudMailinOpenRateDrop")["annotations"]
    # Opens of mail delivered before the drop still trickle in: some small share.
    assert re.match(
        r"Opens per delivery over the last 10s fell to [0-9.]+%, under 0.3 of the 1m before, "
        r"[0-9.]+%, while deliveries held steady\.",
        annotations["description"],
    ), annotations["description"]


def test_rules_used_here_are_the_clis_with_other_windows_and_the_release_selector(
    tmp_path: Path,
) -> None:
    rendered = yaml.safe_load(chart_rules(tmp_path, FAST).read_text())
    scoped = FAST.model_copy(update={"selector": 'job="cm-cloudmailin-exporter", namespace="mail"'})
    assert rendered == yaml.safe_load(render_rules(scoped))
    shipped = Path(__file__).resolve().parent.parent / "helm/cloudmailin-exporter/files/rules.yaml"
    assert render_rules(MonitoringConfig()) == shipped.read_text()
    assert render_rules(FAST) != shipped.read_text()
