"""The README documents every setting and every metric the exporter has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.rules import Builder
from exporter.settings import Settings, env_name
from tests.servers import Running

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{env_name(name)}`" in README, name
        assert "`--" + name.replace("_", "-") + "`" in README, name


def test_every_metric_is_documented(exporter: Running) -> None:
    # What the exporter really exposes, once it has seen an event; the
    # process and Python collectors are prometheus_client's own.
    exporter.post([{"kind": "registration", "recipient": "a@x.example", "message_id": "m"}])
    text = exporter.client.get("/metrics").text
    names = [n for n in re.findall(r"^# TYPE (\S+)", text, re.M) if n.startswith("cloudmailin_")]
    assert "cloudmailin_events_total" in names
    for name in names:
        assert f"`{name}`" in README, name


def test_every_alert_has_a_runbook_section() -> None:

    for rule in Builder(MonitoringConfig()).alerts():
        assert f"\n#### {rule['alert']}\n" in README, rule["alert"]
        severity = rule["labels"]["severity"]
        section = README.split(f"\n#### {rule['alert']}\n", 1)[1]
        assert section.lstrip().startswith(f"*{severity}.*"), rule["alert"]


# Maps whose keys are the user's own (labels, resources...) or documented as one row.
WHOLE = {
    "labels", "annotations", "resources", "podSecurityContext", "securityContext",
    "podAnnotations", "podLabels", "nodeSelector", "affinity", "existingSecretKeys", "config",
}  # fmt: skip


def value_paths(values: dict[str, object], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = prefix + key
        if (isinstance(value, dict) and value and key not in WHOLE) or path == "config":
            assert isinstance(value, dict)
            out += value_paths(value, path + ".")
        else:
            out.append(path)
    return out


def test_every_chart_value_is_in_the_values_table() -> None:
    values = yaml.safe_load(
        (
            Path(__file__).resolve().parent.parent / "helm/cloudmailin-exporter/values.yaml"
        ).read_text()
    )
    table = [line for line in README.splitlines() if line.startswith("| `")]
    for path in value_paths(values):
        parent = path.rsplit(".", 1)[0]
        assert any(f"`{path}`" in row or f"`{parent}` (" in row for row in table), path
