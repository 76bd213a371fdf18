"""The chart's PrometheusRule: scoped to its own release, tunable, routable, and
the same rules the CLI prints for the same knobs."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
import yaml

from exporter.monitoring.config import MonitoringConfig, camel
from exporter.monitoring.rules import render_rules
from tests.chart import CHART, by_kind, documents, install

pytestmark = pytest.mark.e2e  # the real Helm engine

SCOPED = 'job="cm-cloudmailin-exporter", namespace="mail"'


def rule_object(values: dict[str, Any], namespace: str = "mail") -> dict[str, Any]:
    (rule,) = by_kind(install({"prometheusRule": {"enabled": True, **values}}, namespace))[
        "PrometheusRule"
    ]
    return rule


def rules_by_name(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r.get("alert") or r["record"]: r for g in spec["groups"] for r in g["rules"]}


def test_default_selector_is_the_service_the_service_monitor_scrapes() -> None:
    kinds = by_kind(
        install({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    )
    (service,) = kinds["Service"]
    (monitor,) = kinds["ServiceMonitor"]
    # Prometheus Operator names the job after the Service unless jobLabel says otherwise.
    assert "jobLabel" not in monitor["spec"]
    expected = (
        f'job="{service["metadata"]["name"]}", namespace="{service["metadata"]["namespace"]}"'
    )
    assert expected == SCOPED
    for rule in rules_by_name(kinds["PrometheusRule"][0]["spec"]).values():
        for selector in re.findall(r"(?:cloudmailin_\w+|up)\{([^}]*)\}", rule["expr"]):
            assert selector.startswith(SCOPED), (rule.get("alert") or rule["record"], selector)


def test_tuned_values_give_the_rules_the_cli_gives_for_the_same_knobs() -> None:
    """Every knob changed at once: the chart and `cloudmailin-exporter rules` agree."""
    tuned: dict[str, Any] = {}
    for name, field in MonitoringConfig.model_fields.items():
        value = field.default
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            value = round(min(value * 1.5, 0.9) if value < 1 else value * 1.5, 4)
        elif isinstance(value, int):
            value = value + 1
        elif re.fullmatch(r"[0-9]+[a-z]+", value):
            value = "7" + value
        tuned[name] = value
    tuned["selector"] = 'job="mail-metrics"'
    tuned["aggregation"] = "cluster, namespace, job"
    tuned["runbook_url"] = "https://runbooks.example.com/cloudmailin.md"
    tuned["grafana_url"] = "https://grafana.example.com"
    config = MonitoringConfig(**tuned)
    spec = rule_object({"config": {camel(k): v for k, v in tuned.items()}})["spec"]
    assert spec == yaml.safe_load(render_rules(config))


def test_selector_override_is_used_verbatim() -> None:
    spec = rule_object({"config": {"selector": 'service="mail-metrics", job=~"a|b"'}})["spec"]
    exprs = "\n".join(r["expr"] for r in rules_by_name(spec).values())
    assert 'cloudmailin_events_total{service="mail-metrics", job=~"a|b"' in exprs
    assert "cm-cloudmailin-exporter" not in exprs


def test_single_alerts_can_be_disabled() -> None:
    everything = rules_by_name(rule_object({})["spec"])
    spec = rule_object({"disabled": {"CloudMailinBounceSpike": True}})["spec"]
    assert set(everything) - set(rules_by_name(spec)) == {"CloudMailinBounceSpike"}
    # false keeps it.
    spec = rule_object({"disabled": {"CloudMailinBounceSpike": False}})["spec"]
    assert set(rules_by_name(spec)) == set(everything)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"disabled": {"CloudMailinBounceSpikes": True}}, "CloudMailinBounceSpikes"),
        ({"disabled": {"CloudMailinBounceSpike": "yes"}}, "CloudMailinBounceSpike"),
        ({"additionalRuleLabels": {"severity": "page"}}, "severity"),
        ({"additionalRuleLabels": {"team": 3}}, "team"),
        ({"namespace": 3}, "namespace"),
        # Alerts read recorded series by namespace and job.
        ({"config": {"aggregation": "job"}}, "aggregation"),
        ({"config": {"aggregation": "cluster, namespace"}}, "aggregation"),
    ],
)
def test_bad_rule_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        install({"prometheusRule": {"enabled": True, **values}})
    assert message in str(failure.value)


def test_additional_rule_labels_reach_every_alert_and_no_recording() -> None:
    spec = rule_object({"additionalRuleLabels": {"team": "email", "tier": "1"}})["spec"]
    for name, rule in rules_by_name(spec).items():
        if "alert" in rule:
            assert rule["labels"]["team"] == "email", name
            assert rule["labels"]["tier"] == "1", name
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        else:
            assert "team" not in rule.get("labels", {}), name


def test_rule_object_namespace_and_annotations() -> None:
    rule = rule_object({"namespace": "monitoring", "annotations": {"owner": "mail"}})
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["annotations"] == {"owner": "mail"}
    # Living elsewhere, the rules still judge the release's own namespace.
    exprs = "\n".join(r["expr"] for r in rules_by_name(rule["spec"]).values())
    assert 'namespace="mail"' in exprs
    assert rule_object({})["metadata"]["namespace"] == "mail"


LONGEST_RELEASE = "r" * 52 + "x"  # Helm refuses release names past 53 characters


@pytest.mark.parametrize("release", ["cm", "cloudmailin-exporter", LONGEST_RELEASE])
def test_dashboard_configmap_names_are_unique_and_valid(release: str) -> None:
    values = {"dashboards": {"enabled": True}}
    with helm_python.Config(storage_driver="memory", namespace="mail") as config:
        rendered = config.install(str(CHART), release, values, dry_run="client", namespace="mail")
    maps = [d for d in documents(rendered) if d["kind"] == "ConfigMap" and "data" in d]
    names = [m["metadata"]["name"] for m in maps]
    assert len(names) == len(set(names)) == len(list((CHART / "files/dashboards").glob("*.json")))
    for name in names:
        assert len(name) <= 63, name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        # The whole release name is kept: two releases never share a dashboard name.
        assert name.startswith(release), name
