"""End to end: exporter -> Prometheus (the chart's rules) -> Alertmanager -> a receiver.

The rules are the chart's, rendered by the Helm engine for release cm in
namespace mail with every window shortened from minutes to seconds, so a
spike shows within a test's patience; Prometheus scrapes the exporter as the
ServiceMonitor would name it. The baseline alerts keep their warm-up guard:
the first minute of traffic raises nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.rules import render_rules
from tests.servers import Running, eventually, running_exporter
from tests.stack import (
    FAST,
    RELEASE,
    Drive,
    Prometheus,
    Receiver,
    alertmanager,
    chart_rules,
    prometheus,
    receiver,
)

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    exporter: Running
    got: Receiver
    prom: Prometheus
    # What reached the receiver during the first baseline window of traffic.
    warm_up: list[dict[str, Any]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh install, fed steady traffic through its first baseline window and a
    little past it, so that every test finds the history long enough to judge."""
    tmp = tmp_path_factory.mktemp("alerting")
    rules = chart_rules(tmp, FAST)
    with (
        running_exporter(domain_min_events=1) as exporter,
        receiver() as got,
        alertmanager(tmp, got.url) as am_url,
        prometheus(tmp, exporter.url.split("//")[1], rules, am_url, **RELEASE) as prom,
    ):
        assert prom.wait_for_data('up{job="cm-cloudmailin-exporter"} == 1', 20)
        Drive(exporter, 75).thread.join()
        yield Stack(exporter, got, prom, list(got.notifications))


def quiet(stack: Stack) -> int:
    """Wait until no alert fires (whichever test ran before); the number of
    notifications so far, from which a test reads its own."""
    assert eventually(lambda: not stack.prom.query('ALERTS{alertstate="firing"}'), 90)
    return len(stack.got.notifications)


def fired(got: Receiver, name: str, since: int) -> dict[str, Any]:
    return next(
        a
        for note in got.notifications[since:]
        for a in note["alerts"]
        if a["labels"]["alertname"] == name
    )


def test_warm_up_and_normal_traffic_raise_no_alert(stack: Stack) -> None:
    """Through the whole first baseline window, steady traffic raised nothing, and by
    its end the history was long enough to judge; steady traffic still raises nothing."""
    assert stack.warm_up == []
    history = stack.prom.query(
        f"namespace_job:cloudmailin_baseline_history:ratio >= {FAST.baseline_min_history}"
    )
    assert [h["metric"]["job"] for h in history] == ["cm-cloudmailin-exporter"]
    since = quiet(stack)
    Drive(stack.exporter, 20).thread.join()
    firing = [n for n in stack.got.notifications[since:] if n["status"] == "firing"]
    assert firing == [], stack.got.alert_names(since)
    registrations = stack.exporter.value(
        "cloudmailin_events_total", kind="registration", domain="gmail.com"
    )
    assert registrations > 0


def test_bounce_spike_reaches_the_receiver(stack: Stack) -> None:
    got = stack.got
    since = quiet(stack)
    traffic = Drive(stack.exporter, 60, bounce_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinBounceSpike", 45, since), got.alert_names(since)
        assert "CloudMailinSpamRejectionSpike" not in got.alert_names(since)
    finally:
        traffic.stop()
    alert = fired(got, "CloudMailinBounceSpike", since)
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


def test_spam_rejection_spike_reaches_the_receiver(stack: Stack) -> None:
    got = stack.got
    since = quiet(stack)
    traffic = Drive(stack.exporter, 60, spam_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinSpamRejectionSpike", 45, since), got.alert_names(since)
        assert "CloudMailinBounceSpike" not in got.alert_names(since)
    finally:
        traffic.stop()


def test_opens_collapsing_reach_the_receiver(stack: Stack) -> None:
    got = stack.got
    since = quiet(stack)
    traffic = Drive(stack.exporter, 60, open_ratio=0.0, click_ratio=0.0)
    try:
        assert got.wait_for("CloudMailinOpenRateDrop", 45, since), got.alert_names(since)
    finally:
        traffic.stop()
    annotations = fired(got, "CloudMailinOpenRateDrop", since)["annotations"]
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
