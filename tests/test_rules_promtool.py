"""The committed rules: `promtool check rules`, and `promtool test rules` for every alert.

Each alert gets a case that must not fire just before its `for` window ends,
one that fires when it ends (with the description's measured values), a
neighbouring series that stays quiet, and (for the ratio and spike alerts) a
low-volume case its guard keeps quiet. The baseline alerts also get the first
hours of a fresh install, a new job, a long gap and the boundary where their
history becomes long enough.

Series use promtool's notation: `a+bxn` is a, a+b, ..., a+n*b, one value a
minute; `_xn` is n minutes without a sample.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics import DELIVERY_BUCKETS
from exporter.monitoring.config import MonitoringConfig
from tests.chart import by_kind, install
from tests.stack import PROMTOOL

pytestmark = pytest.mark.e2e  # Prometheus's promtool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "helm/cloudmailin-exporter/files/rules.yaml"
JOB = "cloudmailin-exporter"
DAY = 1440
C = MonitoringConfig()


def minutes(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"m": 1, "h": 60, "d": DAY}[unit]


# The minute at which a job scraped from minute 0 has enough history for its
# baseline: its recorded rate has a sample every minute from minute 1 (t of
# them at minute t), against the window's steps, one more than its minutes as
# both ends are included.
HISTORY_READY = math.ceil(C.baseline_min_history * (minutes(C.baseline_window) + 1))


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def series(
    metric: str, values: str, namespace: str, job: str = JOB, **labels: str
) -> dict[str, str]:
    all_labels = {"job": job, "namespace": namespace, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def events(
    kind: str, values: str, namespace: str, domain: str = "other", job: str = JOB
) -> dict[str, str]:
    return series("cloudmailin_events_total", values, namespace, job, kind=kind, domain=domain)


# --- What Prometheus' template functions print (text/template in Go) ----------


def go_g(value: float) -> str:
    return f"{value:.4g}"


def humanize(value: float) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return go_g(value / scale) + prefix
    return go_g(value)


def humanize_duration(value: float) -> str:
    whole = int(value)
    days, hours = whole // 86400, whole // 3600 % 24
    mins, secs = whole // 60 % 60, whole % 60
    if days:
        return f"{days}d {hours}h {mins}m {secs}s"
    if hours:
        return f"{hours}h {mins}m {secs}s"
    if mins:
        return f"{mins}m {secs}s"
    return go_g(value) + "s"


def humanize_percentage(value: float) -> str:
    return go_g(value * 100) + "%"


FUNCTIONS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
}


def render(text: str, labels: dict[str, str], value: float, baseline: float | None) -> str:
    """An annotation as Prometheus expands it, for the values a case is built to give."""

    def query(_: re.Match[str]) -> str:
        assert baseline is not None, text
        return FUNCTIONS["humanizePercentage"](baseline)

    text = re.sub(r"{{ with printf .*? \| query }}.*?{{ end }}", query, text)
    text = re.sub(r"{{ \$labels\.(\w+) }}", lambda m: labels.get(m.group(1), ""), text)
    text = re.sub(r"{{ \$value \| (\w+) }}", lambda m: FUNCTIONS[m.group(1)](value), text)
    text = re.sub(
        r"{{ ([0-9.e+-]+) \| (\w+) }}", lambda m: FUNCTIONS[m.group(2)](float(m.group(1))), text
    )
    assert "{{" not in text, text
    return text


def expected(
    alert: str, value: float = 0, baseline: float | None = None, **labels: str
) -> dict[str, Any]:
    rule = alert_rules()[alert]
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {
            k: render(v, labels, value, baseline) for k, v in rule["annotations"].items()
        },
    }


def fires(
    namespace: str, alert: str, value: float = 0, baseline: float | None = None, job: str = JOB
) -> dict[str, Any]:
    return expected(alert, value, baseline, job=job, namespace=namespace)


def at(minute: int, alert: str, *fired: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": list(fired)}


def quiet(minute: int, *alerts: str) -> list[dict[str, Any]]:
    return [at(minute, alert) for alert in alerts]


def histogram(per_minute: dict[float, float], minutes: int, namespace: str) -> list[dict[str, str]]:
    """Cumulative bucket series for observations landing at the given bounds."""
    out = []
    total = 0.0
    for bound in (*DELIVERY_BUCKETS, float("inf")):
        total += per_minute.get(bound, 0.0)
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(
            series(
                "cloudmailin_time_to_delivery_seconds_bucket",
                f"0+{total}x{minutes}",
                namespace,
                le=le,
            )
        )
    out.append(
        series("cloudmailin_time_to_delivery_seconds_count", f"0+{total}x{minutes}", namespace)
    )
    return out


def interpolated(q: float, bound: float) -> float:
    """histogram_quantile when every observation falls in the bucket ending at `bound`."""
    lower = max((b for b in DELIVERY_BUCKETS if b < bound), default=0.0)
    return lower + (bound - lower) * q


BASELINE_ALERTS = (
    "CloudMailinBounceSpike",
    "CloudMailinSpamRejectionSpike",
    "CloudMailinOpenRateDrop",
    "CloudMailinWebhookSilent",
)
RATIO = C.bounce_ratio_for
SPIKE_AT = DAY + 60
# A spike after a full day: 100 messages sent a minute, 1 of them hard-bounced,
# then 10. The recent share passes 3 times the 1% baseline once more than
# 3.3 of the 15 minutes are spiking, so at SPIKE_AT + 4.
SPIKE_TRUE = SPIKE_AT + 4


def spike_series(kind: str, namespace: str, start: int = 0, job: str = JOB) -> list[dict[str, str]]:
    """100 sent a minute from `start`; `kind` is 1 of them until SPIKE_AT, then 10."""
    lead = f"_x{start} " if start else ""
    before = SPIKE_AT - start
    return [
        events(kind, f"{lead}0+1x{before} {before + 10}+10x120", namespace, job=job),
        events("delivery", f"{lead}0+99x{before} {before * 99 + 90}+90x120", namespace, job=job),
    ]


CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    "CloudMailinBounceRatioHigh": (
        [
            # 3% hard bounces: over the 2% warning.
            events("delivery", "0+97x60", "mail"),
            events("bounce", "0+3x60", "mail"),
            # 1% hard bounces and 2% suppressions: 3% in CloudMailin's overview.
            events("delivery", "0+97x60", "suppressing"),
            events("dispatch_bounce", "0+1x60", "suppressing"),
            events("suppressed", "0+2x60", "suppressing"),
            events("delivery", "0+99x60", "calm"),
            events("bounce", "0+1x60", "calm"),
            # 33% bounces, but 18 sent an hour: too few to judge.
            events("delivery", "0+0.2x60", "tiny"),
            events("dispatch_bounce", "0+0.1x60", "tiny"),
        ],
        [
            at(1 + minutes(RATIO) - 1, "CloudMailinBounceRatioHigh"),
            at(
                1 + minutes(RATIO),
                "CloudMailinBounceRatioHigh",
                fires("mail", "CloudMailinBounceRatioHigh", 0.03),
                fires("suppressing", "CloudMailinBounceRatioHigh", 0.03),
            ),
        ],
    ),
    "CloudMailinBounceRatioCritical": (
        [
            events("delivery", "0+90x60", "mail"),
            events("bounce", "0+10x60", "mail"),
            events("delivery", "0+97x60", "calm"),
            events("bounce", "0+3x60", "calm"),
            events("delivery", "0+0.2x60", "tiny"),
            events("bounce", "0+0.2x60", "tiny"),
        ],
        [
            at(1 + minutes(RATIO) - 1, "CloudMailinBounceRatioCritical"),
            at(
                1 + minutes(RATIO),
                "CloudMailinBounceRatioCritical",
                fires("mail", "CloudMailinBounceRatioCritical", 0.1),
            ),
        ],
    ),
    "CloudMailinBounceSpike": (
        [
            *spike_series("bounce", "mail"),
            # Volume tripling at the same 1% share is a busy day, not a spike.
            events("bounce", f"0+1x{SPIKE_AT} {SPIKE_AT + 3}+3x120", "calm"),
            events("delivery", f"0+99x{SPIKE_AT} {SPIKE_AT * 99 + 297}+297x120", "calm"),
            # From nothing to a trickle: a spike in share, not in volume.
            events("bounce", f"0x{SPIKE_AT} 1+0.3x120", "tiny"),
            events("delivery", f"0+10x{SPIKE_AT + 120}", "tiny"),
        ],
        [
            at(SPIKE_TRUE + minutes(C.bounce_spike_for) - 1, "CloudMailinBounceSpike"),
            at(
                SPIKE_TRUE + minutes(C.bounce_spike_for),
                "CloudMailinBounceSpike",
                # 14 minutes at 10 and one at 1, of 1500 sent.
                fires("mail", "CloudMailinBounceSpike", 141 / 1500, 0.01),
            ),
        ],
    ),
    "CloudMailinSpamRejectionSpike": (
        [
            *spike_series("suppressed", "mail"),
            *spike_series("spamd", "legacy"),
            # Hard bounces spiking are the other alert's business.
            *spike_series("bounce", "calm"),
            events("suppressed", f"0x{SPIKE_AT} 1+0.3x120", "tiny"),
            events("delivery", f"0+10x{SPIKE_AT + 120}", "tiny"),
        ],
        [
            at(SPIKE_TRUE + minutes(C.spam_spike_for) - 1, "CloudMailinSpamRejectionSpike"),
            at(
                SPIKE_TRUE + minutes(C.spam_spike_for),
                "CloudMailinSpamRejectionSpike",
                fires("legacy", "CloudMailinSpamRejectionSpike", 141 / 1500, 0.01),
                fires("mail", "CloudMailinSpamRejectionSpike", 141 / 1500, 0.01),
            ),
        ],
    ),
    "CloudMailinOpenRateDrop": (
        [
            # A day at 20% opens, then 3%: under 0.3 x 20% once more than 49.4
            # of the last 60 minutes are at 3%, so from DAY + 50.
            events("delivery", f"0+100x{DAY + 120}", "mail"),
            events("open", f"0+20x{DAY} {DAY * 20 + 3}+3x120", "mail"),
            # The same day, steady.
            events("delivery", f"0+100x{DAY + 120}", "calm"),
            events("open", f"0+20x{DAY + 120}", "calm"),
            # Open tracking off: never an open.
            events("delivery", f"0+100x{DAY + 120}", "untracked"),
            events("open", f"0x{DAY + 120}", "untracked"),
            # Too few deliveries for 20 opens an hour to be expected.
            events("delivery", f"0+1x{DAY + 120}", "tiny"),
            events("open", f"0+0.2x{DAY} {DAY * 0.2}x120", "tiny"),
            # A burst campaign: deliveries quadruple, opens follow hours later.
            events("delivery", f"0+100x{DAY} {DAY * 100 + 400}+400x120", "burst"),
            events("open", f"0+20x{DAY + 120}", "burst"),
        ],
        [
            at(DAY + 50 + minutes(C.engagement_for) - 1, "CloudMailinOpenRateDrop"),
            at(
                DAY + 50 + minutes(C.engagement_for),
                "CloudMailinOpenRateDrop",
                # An hour at 3% exactly, against the day before it at 20%.
                fires("mail", "CloudMailinOpenRateDrop", 0.03, 0.2),
            ),
        ],
    ),
    "CloudMailinRetriesExhausted": (
        [
            events("retries_exhausted", "0x30 1+1x60", "mail"),
            events("retries_exhausted", "0x30 1x60", "calm"),
        ],
        [
            # Five in the hour by minute 35, then the 5 minutes of `for`.
            at(39, "CloudMailinRetriesExhausted"),
            at(40, "CloudMailinRetriesExhausted", fires("mail", "CloudMailinRetriesExhausted", 10)),
        ],
    ),
    "CloudMailinSlowDelivery": (
        [
            *histogram({1800.0: 2}, 60, "mail"),
            *histogram({60.0: 2}, 60, "calm"),
            *histogram({1800.0: 0.2}, 60, "tiny"),
        ],
        [
            # 20 deliveries (the guard) by minute 10, then the 15 minutes of `for`.
            at(10 + minutes(C.slow_delivery_for) - 1, "CloudMailinSlowDelivery"),
            at(
                10 + minutes(C.slow_delivery_for),
                "CloudMailinSlowDelivery",
                expected(
                    "CloudMailinSlowDelivery",
                    interpolated(C.slow_delivery_quantile, 1800.0),
                    job=JOB,
                    namespace="mail",
                    quantile="0.9",
                ),
            ),
        ],
    ),
    "CloudMailinWebhookSilent": (
        [
            events("delivery", f"0+10x{DAY} {DAY * 10}x60", "mail"),
            events("delivery", f"0+10x{DAY + 60}", "calm"),
            # Never busy: its silence is normal.
            events("delivery", f"0x{DAY + 60}", "tiny"),
        ],
        [
            # Silent from minute DAY + 30 (nothing in 30 minutes), then 15 of `for`.
            at(DAY + 30 + minutes(C.silent_for) - 1, "CloudMailinWebhookSilent"),
            at(
                DAY + 30 + minutes(C.silent_for),
                "CloudMailinWebhookSilent",
                fires("mail", "CloudMailinWebhookSilent", 300),
            ),
        ],
    ),
    "CloudMailinWebhookRejecting": (
        [
            series("cloudmailin_webhook_requests_total", "0+1x60", "mail", code="401"),
            series("cloudmailin_webhook_requests_total", "0+1x60", "mail", code="200"),
            # Errors inside the exporter count as rejections too.
            series("cloudmailin_webhook_requests_total", "0+1x60", "broken", code="500"),
            series("cloudmailin_webhook_requests_total", "0+1x60", "broken", code="200"),
            series("cloudmailin_webhook_requests_total", "0+10x60", "calm", code="200"),
            series("cloudmailin_webhook_requests_total", "0+0.2x60", "calm", code="400"),
            series("cloudmailin_webhook_requests_total", "0+0.3x60", "tiny", code="401"),
        ],
        [
            # 10 requests (the guard) by minute 5, then the 10 minutes of `for`.
            at(14, "CloudMailinWebhookRejecting"),
            at(
                15,
                "CloudMailinWebhookRejecting",
                fires("broken", "CloudMailinWebhookRejecting", 0.5),
                fires("mail", "CloudMailinWebhookRejecting", 0.5),
            ),
        ],
    ),
    "CloudMailinPendingEvicted": (
        [
            series("cloudmailin_pending_evicted_total", "0x10 1+1x60", "mail", reason="capacity"),
            # Expiry is the state's normal end of a registration, not a loss.
            series("cloudmailin_pending_evicted_total", "0x10 1+1x60", "calm", reason="expired"),
            series("cloudmailin_pending_evicted_total", "0x70", "calm", reason="capacity"),
        ],
        [
            at(10 + minutes(C.evicted_for), "CloudMailinPendingEvicted"),
            at(
                11 + minutes(C.evicted_for),
                "CloudMailinPendingEvicted",
                # 6 evictions in minutes 11-16: an hour's window extrapolated back
                # to where the counter was at 0 (minute 10).
                fires("mail", "CloudMailinPendingEvicted", 6),
            ),
        ],
    ),
    "CloudMailinUnmatchedDeliveries": (
        [
            events("delivery", "0+10x60", "mail"),
            series("cloudmailin_unmatched_events_total", "0+1x60", "mail", kind="delivery"),
            events("delivery", "0+10x60", "calm"),
            series("cloudmailin_unmatched_events_total", "0+0.2x60", "calm", kind="delivery"),
            # Unmatched opens are the ones sent before start-up; not registrations lost.
            series("cloudmailin_unmatched_events_total", "0+5x60", "calm", kind="open"),
            events("delivery", "0+0.5x60", "tiny"),
            series("cloudmailin_unmatched_events_total", "0+0.5x60", "tiny", kind="delivery"),
        ],
        [
            at(5 + minutes(C.unmatched_for) - 1, "CloudMailinUnmatchedDeliveries"),
            at(
                5 + minutes(C.unmatched_for),
                "CloudMailinUnmatchedDeliveries",
                fires("mail", "CloudMailinUnmatchedDeliveries", 0.1),
            ),
        ],
    ),
    "CloudMailinDomainOverflow": (
        [
            series("cloudmailin_domain_overflow_events_total", "0x10 1+1x60", "mail"),
            series("cloudmailin_domain_overflow_events_total", "0x70", "calm"),
        ],
        [
            at(40, "CloudMailinDomainOverflow"),
            at(41, "CloudMailinDomainOverflow", fires("mail", "CloudMailinDomainOverflow", 31)),
        ],
    ),
    "CloudMailinStateStoreDown": (
        [
            series("cloudmailin_state_store_up", "1x10 0x30", "mail", instance="10.0.0.1:9878"),
            series("cloudmailin_state_store_up", "1x40", "calm", instance="10.0.0.2:9878"),
            # Down for a moment, back before `for` ends.
            series("cloudmailin_state_store_up", "1x10 0x3 1x30", "blip", instance="10.0.0.3:9878"),
        ],
        [
            at(10 + minutes(C.state_store_down_for), "CloudMailinStateStoreDown"),
            at(
                11 + minutes(C.state_store_down_for),
                "CloudMailinStateStoreDown",
                expected(
                    "CloudMailinStateStoreDown", job=JOB, namespace="mail", instance="10.0.0.1:9878"
                ),
            ),
        ],
    ),
    "CloudMailinExporterDown": (
        [
            series("up", "1x10 0x30", "mail", instance="10.0.0.1:9878"),
            series("up", "1x40", "calm", instance="10.0.0.2:9878"),
        ],
        [
            at(15, "CloudMailinExporterDown"),
            at(
                16,
                "CloudMailinExporterDown",
                expected(
                    "CloudMailinExporterDown", job=JOB, namespace="mail", instance="10.0.0.1:9878"
                ),
            ),
        ],
    ),
    "CloudMailinExporterAbsent": (
        [{"series": 'up{job="node-exporter", instance="n:9100"}', "values": "1x30"}],
        [
            at(14, "CloudMailinExporterAbsent"),
            at(16, "CloudMailinExporterAbsent", expected("CloudMailinExporterAbsent")),
        ],
    ),
}


def run_promtool(
    tmp_path: Path, tests: list[dict[str, Any]], rules: Path = RULES
) -> subprocess.CompletedProcess[str]:
    document = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        # promtool evaluates groups in no particular order unless told; Prometheus
        # runs each on its own timer. Recordings first makes the boundaries exact:
        # otherwise an alert may read the previous minute's recordings.
        "group_eval_order": ["cloudmailin-exporter.rules", "cloudmailin-exporter.alerts"],
        "tests": tests,
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def case(input_series: list[dict[str, str]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": input_series, "alert_rule_test": checks}


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(RULES.read_text())["groups"]
    count = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_every_alert_has_cases() -> None:
    assert set(CASES) == set(alert_rules())


def test_alerts_fire_after_their_windows_and_only_for_the_right_series(tmp_path: Path) -> None:
    result = run_promtool(tmp_path, [case(*CASES[alert]) for alert in sorted(CASES)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Baselines: no alert before the history is there, an alert once it is ------


def test_history_ready_is_where_the_recorded_history_crosses_its_threshold(
    tmp_path: Path,
) -> None:
    history = "namespace_job:cloudmailin_baseline_history:ratio"
    checks = [
        {
            "expr": f"{history} >= bool {C.baseline_min_history}",
            "eval_time": f"{minute}m",
            "exp_samples": [{"labels": f'{{job="{JOB}", namespace="mail"}}', "value": value}],
        }
        for minute, value in ((HISTORY_READY - 1, 0), (HISTORY_READY, 1))
    ]
    traffic = [events("delivery", f"0+1x{HISTORY_READY + 5}", "mail")]
    result = run_promtool(
        tmp_path, [{"interval": "1m", "input_series": traffic, "promql_expr_test": checks}]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_fresh_install_with_steady_traffic_raises_nothing(tmp_path: Path) -> None:
    """The issue's example: 600 deliveries and 6 suppressions every 5 minutes,
    starting 90 minutes after install, with opens; nothing fires in the first hours
    nor when the history becomes long enough."""
    end = HISTORY_READY + 120
    traffic = [
        series("up", f"1x{end}", "mail", instance="10.0.0.1:9878"),
        events("delivery", f"0x90 0+120x{end - 90}", "mail"),
        events("suppressed", f"0x90 0+1.2x{end - 90}", "mail"),
        events("open", f"0x90 0+24x{end - 90}", "mail"),
        events("bounce", f"0x{end}", "mail"),
    ]
    times = (100, 120, 180, 240, 360, 600, HISTORY_READY, HISTORY_READY + 60, end)
    checks = [check for minute in times for check in quiet(minute, *sorted(CASES))]
    result = run_promtool(tmp_path, [case(traffic, checks)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "kind"),
    [("CloudMailinBounceSpike", "bounce"), ("CloudMailinSpamRejectionSpike", "suppressed")],
)
def test_spike_waits_for_history_and_fires_when_it_is_there(
    tmp_path: Path, alert: str, kind: str
) -> None:
    """A spike 5 minutes before the history is long enough: quiet until it is,
    then the `for` window, then an alert whose baseline is the pre-spike 1%."""
    start = HISTORY_READY - 5
    traffic = [
        events(kind, f"0+1x{start} {start + 10}+10x60", "mail"),
        events("delivery", f"0+99x{start} {start * 99 + 90}+90x60", "mail"),
    ]
    ready = HISTORY_READY + minutes(alert_rules()[alert]["for"])
    checks = [
        at(HISTORY_READY - 1, alert),
        at(ready - 1, alert),
        # The whole 15-minute window at 10 of 100, against 1 of 100 before it.
        at(ready, alert, fires("mail", alert, 0.1, 0.01)),
    ]
    result = run_promtool(tmp_path, [case(traffic, checks)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_new_job_and_long_gap_keep_baseline_alerts_quiet(tmp_path: Path) -> None:
    """The same spike in an old job fires; in a job new since five hours before, and
    in one back from six hours unscraped, it does not."""
    gap = 360
    new_job = spike_series("bounce", "mail", start=DAY - 300, job="new-cloudmailin-exporter")
    back = [
        events("bounce", f"0+1x{DAY - gap} _x{gap - 1} {DAY}+1x59 {DAY + 70}+10x120", "gap"),
        events(
            "delivery",
            f"0+99x{DAY - gap} _x{gap - 1} {DAY * 99}+99x59 {DAY * 99 + 59 * 99 + 90}+90x120",
            "gap",
        ),
    ]
    old = spike_series("bounce", "mail")
    checks = [
        # The spike's whole window against the whole day before it.
        at(
            SPIKE_AT + 15,
            "CloudMailinBounceSpike",
            fires("mail", "CloudMailinBounceSpike", 0.1, 0.01),
        )
    ]
    later = [at(SPIKE_AT + minute, "CloudMailinBounceSpike") for minute in (15, 30, 60, 120)]
    result = run_promtool(
        tmp_path, [case([*old, *new_job, *back], checks), case([*new_job, *back], later)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_open_rate_drop_waits_for_history(tmp_path: Path) -> None:
    """Ten hours at 20% opens, then an hour and more at 3%: too little history."""
    traffic = [
        events("delivery", "0+100x720", "mail"),
        events("open", "0+20x600 12003+3x120", "mail"),
    ]
    checks = [at(minute, "CloudMailinOpenRateDrop") for minute in (660, 690, 720)]
    result = run_promtool(tmp_path, [case(traffic, checks)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_silence_after_a_long_gap_is_not_judged_against_yesterday(tmp_path: Path) -> None:
    """Busy yesterday at this hour, then unscraped for 20 hours, now silent: the
    last day holds too little history to call the silence unusual."""
    traffic = [events("delivery", "0+10x600 _x1200 6000x700", "mail")]
    checks = [at(minute, "CloudMailinWebhookSilent") for minute in (1900, 2000, 2100)]
    result = run_promtool(tmp_path, [case(traffic, checks)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_absent_stays_quiet_while_the_exporter_is_scraped(tmp_path: Path) -> None:
    result = run_promtool(
        tmp_path,
        [
            case(
                [series("up", "1x30", "mail", instance="10.0.0.1:9878")],
                [at(20, "CloudMailinExporterAbsent")],
            )
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_case_is_caught(tmp_path: Path) -> None:
    """The harness itself can fail: a wrong expectation makes promtool exit non-zero,
    and so does a wrong measured value in a description."""
    input_series, _ = CASES["CloudMailinExporterDown"]
    wrong = [at(12, "CloudMailinExporterDown", fires("mail", "CloudMailinExporterDown"))]
    assert run_promtool(tmp_path, [case(input_series, wrong)]).returncode != 0
    input_series, checks = CASES["CloudMailinBounceRatioCritical"]
    (fired,) = checks[-1]["exp_alerts"]
    assert fired == fires("mail", "CloudMailinBounceRatioCritical", 0.1)
    wrong_value = fires("mail", "CloudMailinBounceRatioCritical", 0.11)
    wrong = [{**checks[-1], "exp_alerts": [wrong_value]}]
    assert run_promtool(tmp_path, [case(input_series, wrong)]).returncode != 0


def relabel(items: list[dict[str, str]], job: str, namespace: str) -> list[dict[str, str]]:
    """The "mail" series of a case, as if scraped under another job and namespace."""
    ours = f'job="{JOB}",namespace="mail"'
    return [
        {**item, "series": item["series"].replace(ours, f'job="{job}",namespace="{namespace}"')}
        for item in items
        if ours in item["series"]
    ]


def test_chart_rules_judge_only_their_own_release(tmp_path: Path) -> None:
    """Rendered with its defaults for release cm in namespace mail, the chart's bounce
    spike fires for cm's series and not for the same spike in another release's."""
    (rule,) = by_kind(install({"prometheusRule": {"enabled": True}}, "mail"))["PrometheusRule"]
    rules = tmp_path / "chart-rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    alert = "CloudMailinBounceSpike"
    input_series, checks = CASES[alert]
    release = "cm-cloudmailin-exporter"
    spike = [
        *relabel(input_series, release, "mail"),
        *relabel(input_series, "other-cloudmailin-exporter", "mail"),
        *relabel(input_series, release, "elsewhere"),
    ]
    assert len(spike) == 3 * len(relabel(input_series, JOB, "mail")) > 0
    (fired,) = checks[-1]["exp_alerts"]
    only_ours = {
        **checks[-1],
        "exp_alerts": [
            {**fired, "exp_labels": {**fired["exp_labels"], "job": release}},
        ],
    }
    annotations = only_ours["exp_alerts"][0]["exp_annotations"]
    annotations["summary"] = annotations["summary"].replace(f"/{JOB})", f"/{release})")
    result = run_promtool(tmp_path, [case(spike, [*checks[:-1], only_ours])], rules)
    assert result.returncode == 0, result.stdout + result.stderr
