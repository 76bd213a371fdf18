"""The README documents every setting and every metric the exporter has."""

from __future__ import annotations

from pathlib import Path

from exporter.metrics import METRIC_NAMES
from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.rules import Builder
from exporter.settings import Settings, env_name

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in README, name
        assert "`--" + name.replace("_", "-") + "`" in README, name


def test_every_metric_is_documented() -> None:
    for name in METRIC_NAMES:
        assert f"`{name}`" in README, name


def test_every_alert_has_a_runbook_section() -> None:

    for rule in Builder(MonitoringConfig()).alerts():
        assert f"\n#### {rule['alert']}\n" in README, rule["alert"]
        severity = rule["labels"]["severity"]
        section = README.split(f"\n#### {rule['alert']}\n", 1)[1]
        assert section.lstrip().startswith(f"*{severity}.*"), rule["alert"]
