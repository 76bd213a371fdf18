"""End to end: exporter -> Prometheus (real rules) -> Alertmanager -> a receiver.

The rules are the shipped ones with windows shortened from minutes to
seconds, so a spike shows within a test's patience.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.monitoring.rules import render_rules
from tests.servers import Running, eventually, running_exporter
from tests.stack import (
    FAST,
    Drive,
    Prometheus,
    Receiver,
    alertmanager,
    prometheus,
    receiver,
)

pytestmark = pytest.mark.e2e
Stack = tuple[Running, Receiver, Prometheus]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
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
        yield exporter, got, prom


def quiet(stack: Stack) -> int:
    """Wait until no alert fires (whichever test ran before); the number of
    notifications so far, from which a test reads its own."""
    _, got, prom = stack
    assert eventually(lambda: not prom.query('ALERTS{alertstate="firing"}'), 90)
    return len(got.notifications)


def test_normal_traffic_raises_no_alert(stack: Stack) -> None:
    exporter, got, _ = stack
    since = quiet(stack)
    Drive(exporter, 20).thread.join()
    fired = [n for n in got.notifications[since:] if n["status"] == "firing"]
    assert fired == [], got.alert_names(since)
    assert exporter.value("cloudmailin_events_total", kind="registration", domain="gmail.com") > 0


def test_bounce_spike_reaches_the_receiver(stack: Stack) -> None:
    exporter, got, _ = stack
    since = quiet(stack)
    traffic = Drive(exporter, 60, bounce_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinBounceSpike", 45, since), got.alert_names(since)
        assert "CloudMailinSpamRejectionSpike" not in got.alert_names(since)
    finally:
        traffic.stop()
    alert = next(
        a
        for note in got.notifications[since:]
        for a in note["alerts"]
        if a["labels"]["alertname"] == "CloudMailinBounceSpike"
    )
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["namespace"] == "e2e"
    assert alert["annotations"]["summary"] == "Bounces spiking (e2e/cloudmailin-exporter)"
    assert alert["annotations"]["runbook_url"].endswith("#cloudmailinbouncespike")


def test_spam_rejection_spike_reaches_the_receiver(stack: Stack) -> None:
    exporter, got, _ = stack
    since = quiet(stack)
    traffic = Drive(exporter, 60, spam_ratio=0.5)
    try:
        assert got.wait_for("CloudMailinSpamRejectionSpike", 45, since), got.alert_names(since)
        assert "CloudMailinBounceSpike" not in got.alert_names(since)
    finally:
        traffic.stop()
