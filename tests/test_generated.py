"""Committed generated files match their generators, and the rules CLI prints them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.generate import outputs
from exporter.monitoring.rules import render_rules
from tests.servers import BIN

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(outputs(), key=str), ids=str)
def test_committed_file_matches_its_generator(path: Path) -> None:
    on_disk = ROOT / path
    assert on_disk.exists(), f"{path} is missing: run `make generate`"
    assert on_disk.read_text() == outputs()[path], f"{path} drifted: run `make generate`"


def test_rules_command_prints_the_committed_rules() -> None:
    result = subprocess.run(
        [str(BIN / "cloudmailin-exporter"), "rules"], capture_output=True, text=True, check=True
    )
    assert result.stdout == (ROOT / "helm/cloudmailin-exporter/files/rules.yaml").read_text()


def test_rules_command_overrides_thresholds() -> None:
    result = subprocess.run(
        [
            str(BIN / "cloudmailin-exporter"), "rules",
            "--bounce-ratio-warning", "0.03", "--bounce-ratio-for", "5m",
            "--selector", 'job="mail-metrics"',
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rules = {
        r.get("alert") or r["record"]: r
        for g in yaml.safe_load(result.stdout)["groups"]
        for r in g["rules"]
    }
    high = rules["CloudMailinBounceRatioHigh"]
    assert high["expr"].startswith("cloudmailin:bounce_ratio > 0.03\n")
    assert high["for"] == "5m"
    assert (
        'cloudmailin_events_total{job="mail-metrics", kind=~"delivery"}'
        in (rules["cloudmailin:delivery_ratio"]["expr"])
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--bounce-ratio-warning", "2"), ("--bounce-ratio-for", "soon"), ("--no-such", "1")],
)
def test_rules_command_refuses_bad_overrides(flag: str, value: str) -> None:
    result = subprocess.run(
        [str(BIN / "cloudmailin-exporter"), "rules", flag, value],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert flag in result.stderr
    assert result.stdout == ""


def test_every_alert_carries_severity_summary_description_and_links() -> None:
    groups = yaml.safe_load(render_rules(MonitoringConfig()))["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert annotations["runbook_url"].endswith("#" + rule["alert"].lower())
