"""The committed rules: `promtool check rules`, and `promtool test rules` for every alert.

Each alert gets a case that must not fire just before its `for` window ends,
one that fires after it, a neighbouring series that stays quiet, and (for the
ratio and spike alerts) a low-volume case its guard keeps quiet.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics import DELIVERY_BUCKETS
from tests.stack import PROMTOOL

pytestmark = pytest.mark.e2e  # Prometheus's promtool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "helm/cloudmailin-exporter/files/rules.yaml"
JOB = "cloudmailin-exporter"


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def series(metric: str, values: str, namespace: str, **labels: str) -> dict[str, str]:
    all_labels = {"job": JOB, "namespace": namespace, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def events(kind: str, values: str, namespace: str, domain: str = "other") -> dict[str, str]:
    return series("cloudmailin_events_total", values, namespace, kind=kind, domain=domain)


def expected(alert: str, **labels: str) -> dict[str, Any]:
    rule = alert_rules()[alert]

    def fill(text: str) -> str:
        return re.sub(r"{{ \$labels\.(\w+) }}", lambda m: labels.get(m.group(1), ""), text)

    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()},
    }


def at(minutes: int, alert: str, *fired: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": list(fired)}


def fires(namespace: str, alert: str) -> dict[str, Any]:
    return expected(alert, job=JOB, namespace=namespace)


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


DAY = 1440

CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    "CloudMailinBounceRatioHigh": (
        [
            events("delivery", "0+100x60", "mail"),
            events("bounce", "0+3x60", "mail"),
            events("delivery", "0+100x60", "calm"),
            events("bounce", "0+1x60", "calm"),
            # 33% bounces, but 18 outcomes an hour: too few to judge.
            events("delivery", "0+0.2x60", "tiny"),
            events("dispatch_bounce", "0+0.1x60", "tiny"),
        ],
        [
            at(15, "CloudMailinBounceRatioHigh"),
            at(17, "CloudMailinBounceRatioHigh", fires("mail", "CloudMailinBounceRatioHigh")),
        ],
    ),
    "CloudMailinBounceRatioCritical": (
        [
            events("delivery", "0+100x60", "mail"),
            events("bounce", "0+10x60", "mail"),
            events("delivery", "0+100x60", "calm"),
            events("bounce", "0+3x60", "calm"),
            events("delivery", "0+0.2x60", "tiny"),
            events("bounce", "0+0.2x60", "tiny"),
        ],
        [
            at(15, "CloudMailinBounceRatioCritical"),
            at(
                17,
                "CloudMailinBounceRatioCritical",
                fires("mail", "CloudMailinBounceRatioCritical"),
            ),
        ],
    ),
    "CloudMailinBounceSpike": (
        [
            events("bounce", f"0+1x{DAY} {DAY + 10}+10x60", "mail"),
            events("bounce", f"0+1x{DAY + 60}", "calm"),
            # From nothing to a trickle: a spike in ratio, not in volume.
            events("bounce", f"0x{DAY} 1+0.3x60", "tiny"),
        ],
        [
            at(DAY + 12, "CloudMailinBounceSpike"),
            at(DAY + 17, "CloudMailinBounceSpike", fires("mail", "CloudMailinBounceSpike")),
        ],
    ),
    "CloudMailinSpamRejectionSpike": (
        [
            events("suppressed", f"0+1x{DAY} {DAY + 10}+10x60", "mail"),
            events("spamd", f"0+1x{DAY} {DAY + 10}+10x60", "legacy"),
            events("suppressed", f"0+1x{DAY + 60}", "calm"),
            events("bounce", f"0+1x{DAY} {DAY + 10}+10x60", "calm"),
            events("suppressed", f"0x{DAY} 1+0.3x60", "tiny"),
        ],
        [
            at(DAY + 12, "CloudMailinSpamRejectionSpike"),
            at(
                DAY + 17,
                "CloudMailinSpamRejectionSpike",
                fires("legacy", "CloudMailinSpamRejectionSpike"),
                fires("mail", "CloudMailinSpamRejectionSpike"),
            ),
        ],
    ),
    "CloudMailinRetriesExhausted": (
        [
            events("retries_exhausted", "0x30 1+1x60", "mail"),
            events("retries_exhausted", "0x30 1x60", "calm"),
        ],
        [
            at(37, "CloudMailinRetriesExhausted"),
            at(42, "CloudMailinRetriesExhausted", fires("mail", "CloudMailinRetriesExhausted")),
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
            at(23, "CloudMailinSlowDelivery"),
            at(
                27,
                "CloudMailinSlowDelivery",
                expected("CloudMailinSlowDelivery", job=JOB, namespace="mail", quantile="0.9"),
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
            at(DAY + 30 + 13, "CloudMailinWebhookSilent"),
            at(
                DAY + 30 + 17, "CloudMailinWebhookSilent", fires("mail", "CloudMailinWebhookSilent")
            ),
        ],
    ),
    "CloudMailinWebhookRejecting": (
        [
            series("cloudmailin_webhook_requests_total", "0+1x60", "mail", code="401"),
            series("cloudmailin_webhook_requests_total", "0+1x60", "mail", code="200"),
            series("cloudmailin_webhook_requests_total", "0+10x60", "calm", code="200"),
            series("cloudmailin_webhook_requests_total", "0+0.2x60", "calm", code="400"),
            series("cloudmailin_webhook_requests_total", "0+0.3x60", "tiny", code="401"),
            # Failing (500) is not counting either.
            series("cloudmailin_webhook_requests_total", "0+1x60", "failing", code="500"),
            series("cloudmailin_webhook_requests_total", "0+1x60", "failing", code="200"),
        ],
        [
            # 10 requests (the guard) by minute 5, then the 10 minutes of `for`.
            at(13, "CloudMailinWebhookRejecting"),
            at(
                17,
                "CloudMailinWebhookRejecting",
                fires("mail", "CloudMailinWebhookRejecting"),
                fires("failing", "CloudMailinWebhookRejecting"),
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
            at(43, "CloudMailinDomainOverflow", fires("mail", "CloudMailinDomainOverflow")),
        ],
    ),
    "CloudMailinStateStoreErrors": (
        [
            series("cloudmailin_state_errors_total", "0x10 1+1x30", "mail", operation="write"),
            series("cloudmailin_state_errors_total", "0x40", "calm", operation="write"),
        ],
        [
            at(15, "CloudMailinStateStoreErrors"),
            at(17, "CloudMailinStateStoreErrors", fires("mail", "CloudMailinStateStoreErrors")),
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


def run_promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    document = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 22 rules found" in result.stdout


def test_every_alert_has_cases() -> None:
    assert set(CASES) == set(alert_rules())


@pytest.mark.parametrize("alert", sorted(CASES))
def test_alert_fires_after_its_window_and_only_for_the_right_series(
    tmp_path: Path, alert: str
) -> None:
    input_series, checks = CASES[alert]
    result = run_promtool(
        tmp_path, [{"interval": "1m", "input_series": input_series, "alert_rule_test": checks}]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_absent_stays_quiet_while_the_exporter_is_scraped(tmp_path: Path) -> None:
    result = run_promtool(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [series("up", "1x30", "mail", instance="10.0.0.1:9878")],
                "alert_rule_test": [at(20, "CloudMailinExporterAbsent")],
            }
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_case_is_caught(tmp_path: Path) -> None:
    """The harness itself can fail: a wrong expectation makes promtool exit non-zero."""
    input_series, _ = CASES["CloudMailinExporterDown"]
    wrong = [at(12, "CloudMailinExporterDown", fires("mail", "CloudMailinExporterDown"))]
    result = run_promtool(
        tmp_path, [{"interval": "1m", "input_series": input_series, "alert_rule_test": wrong}]
    )
    assert result.returncode != 0
