"""End to end: exporter -> Prometheus (the chart's rules) -> Alertmanager -> a receiver.

The rules are the chart's, rendered by the Helm engine for release cm in
namespace mail with every window shortened from minutes to seconds, so a
spike shows within a test's patience; Prometheus scrapes the exporter as the
ServiceMonitor would name it. The baseline alerts keep their warm-up guard:
the first minute of traffic raises nothing. The state-store alerts run on an
exporter of their own whose store is a real redis-server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.processes import RedisServer, redis_server
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


def drive_until(stack: Stack, alert: str, **traffic: float) -> int:
    """From a quiet stack, drive `traffic` until `alert` reaches the receiver
    (within 45 s); the number of notifications before it, as `quiet` gives."""
    since = quiet(stack)
    drive = Drive(stack.exporter, 60, **traffic)
    try:
        assert stack.got.wait_for(alert, 45, since), stack.got.alert_names(since)
    finally:
        drive.stop()
    return since


def test_bounce_spike_reaches_the_receiver(stack: Stack) -> None:
    got = stack.got
    since = drive_until(stack, "CloudMailinBounceSpike", bounce_ratio=0.5)
    assert "CloudMailinSpamRejectionSpike" not in got.alert_names(since)
    alert = fired(got, "CloudMailinBounceSpike", since)
    labels, annotations = alert["labels"], alert["annotations"]
    assert labels["severity"] == "warning"
    assert labels["namespace"] == "mail"
    assert annotations["summary"] == "Hard bounces spiking (mail/cm-cloudmailin-exporter)"
    assert annotations["runbook_url"].endswith("docs/runbooks.md#cloudmailinbouncespike")
    # The measured share and the baseline it was held against, both as percentages.
    assert re.fullmatch(
        r"[0-9.]+% of the mail sent over the last 10s hard-bounced: more than 3 times the "
        r"share over the 1m before, [0-9.]+%, with at least "
        rf"{FAST.bounce_spike_min_events} hard bounces\.",
        annotations["description"],
    ), annotations["description"]


def test_spam_rejection_spike_reaches_the_receiver(stack: Stack) -> None:
    since = drive_until(stack, "CloudMailinSpamRejectionSpike", spam_ratio=0.5)
    assert "CloudMailinBounceSpike" not in stack.got.alert_names(since)


def test_opens_collapsing_reach_the_receiver(stack: Stack) -> None:
    since = drive_until(stack, "CloudMailinOpenRateDrop", open_ratio=0.0, click_ratio=0.0)
    annotations = fired(stack.got, "CloudMailinOpenRateDrop", since)["annotations"]
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


# --- The state store: a real redis-server behind a stack of its own -------------

# Seconds an alert may take to reach the receiver once its cause is there: the
# FAST windows (30s at most) and `for` (3s), plus scrape, evaluation and
# Alertmanager's group_wait of a second each.
REACH_SECONDS = 60


@dataclass
class StoreStack:
    exporter: Running
    redis: RedisServer
    got: Receiver
    prom: Prometheus


@pytest.fixture
def store_stack(tmp_path: Path) -> Iterator[StoreStack]:
    """An exporter on Redis with the smallest pending table the settings allow (100),
    scraped and alerted on like the stack above; fresh for every test, since tests
    here break the store."""
    rules = chart_rules(tmp_path, FAST)
    with (
        redis_server(tmp_path) as redis,
        running_exporter(
            state_url=f"redis://127.0.0.1:{redis.port}/0",
            pending_max_entries=100,
            domain_min_events=1,
        ) as exporter,
        receiver() as got,
        alertmanager(tmp_path, got.url) as am_url,
        prometheus(tmp_path, exporter.url.split("//")[1], rules, am_url, **RELEASE) as prom,
    ):
        assert prom.wait_for_data('up{job="cm-cloudmailin-exporter"} == 1', 20)
        yield StoreStack(exporter, redis, got, prom)


def test_state_store_down_reaches_the_receiver(store_stack: StoreStack) -> None:
    got = store_stack.got
    traffic = Drive(store_stack.exporter, 90, rate=10)
    try:
        # Up and answering first: the alert is about the stop below, not the start.
        assert store_stack.prom.wait_for_data("cloudmailin_state_store_up == 1", 20)
        assert store_stack.prom.wait_for_data(
            'sum(cloudmailin_events_total{kind="delivery"}) > 0', 20
        )
        assert "CloudMailinStateStoreDown" not in got.alert_names()
        since = len(got.notifications)
        store_stack.redis.stop()
        assert got.wait_for("CloudMailinStateStoreDown", REACH_SECONDS, since), got.alert_names(
            since
        )
    finally:
        traffic.stop()
    alert = fired(got, "CloudMailinStateStoreDown", since)
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["namespace"] == "mail"
    assert alert["annotations"]["runbook_url"].endswith("#cloudmailinstatestoredown")
    assert alert["labels"]["instance"] in alert["annotations"]["description"]
    assert store_stack.exporter.value("cloudmailin_state_store_up") == 0


def test_a_full_pending_table_reaches_the_receiver(store_stack: StoreStack) -> None:
    """Messages registered faster than they are delivered overflow a 100-entry table:
    registrations are evicted, and their deliveries then arrive unmatched."""
    got = store_stack.got
    # 20 a second, each delivered after 20 s or so: some 400 pending at once.
    traffic = Drive(store_stack.exporter, 90, rate=20, delivery_delay=20)
    try:
        assert got.wait_for("CloudMailinPendingEvicted", REACH_SECONDS), got.alert_names()
        assert got.wait_for("CloudMailinUnmatchedDeliveries", REACH_SECONDS), got.alert_names()
    finally:
        traffic.stop()
    assert "CloudMailinStateStoreDown" not in got.alert_names()
    evicted = fired(got, "CloudMailinPendingEvicted", 0)["annotations"]["description"]
    assert "Raise PENDING_MAX_ENTRIES" in evicted
    unmatched = fired(got, "CloudMailinUnmatchedDeliveries", 0)["annotations"]["description"]
    assert re.match(r"[0-9.]+% of the deliveries in the last 30s had no registration", unmatched)
    assert store_stack.exporter.value("cloudmailin_pending_evicted_total", reason="capacity") > 0
