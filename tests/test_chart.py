"""The Helm chart: strict lint, every ci/ values file rendered by Helm v4 and
validated against Kubernetes' schemas, secure defaults, the rules it ships,
and bad values refused with a clear message."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from exporter.monitoring.config import MonitoringConfig, camel
from tests.chart import CHART, CI_VALUES, by_kind, documents, install, load_values, render_templates
from tests.stack import PROMTOOL

pytestmark = pytest.mark.e2e  # the real Helm engine

# The oldest and newest Kubernetes the chart claims (Chart.yaml kubeVersion, annotations).
KUBERNETES = ("1.25", "1.37")
CRDS = {"ServiceMonitor", "PrometheusRule"}


def test_chart_claims_the_versions_tested() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert chart["annotations"]["cloudmailin-exporter/tested-kubernetes"] == ", ".join(KUBERNETES)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_strict_lint_passes(values_file: Path) -> None:
    report = helm_python.lint(str(CHART), load_values(values_file), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems
    assert report["errors"] == []


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(values_file: Path) -> None:
    release = install(load_values(values_file))
    docs = documents(release)
    assert docs
    templates = render_templates(load_values(values_file))
    hook_docs = [yaml.safe_load(t) for path, t in templates.items() if "/templates/tests/" in path]
    assert all("helm.sh/hook" in h["metadata"]["annotations"] for h in hook_docs)
    assert len(hook_docs) == 1
    for doc in docs + hook_docs:
        if doc["kind"] in CRDS:
            continue
        for version in KUBERNETES:
            kubernetes_validate.validate(doc, version, strict=True)


def test_crd_resources_have_the_fields_the_operator_needs() -> None:
    kinds = by_kind(install(load_values(CHART / "ci/monitoring-values.yaml")))
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    (service,) = kinds["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mail"]}
    (rule,) = kinds["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert [g["name"] for g in rule["spec"]["groups"]] == [
        "cloudmailin-exporter.rules",
        "cloudmailin-exporter.alerts",
    ]


def test_defaults_are_secure() -> None:
    kinds = by_kind(install())
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (
        env["CLOUDMAILIN_EXPORTER_STATE_URL"] == "sqlite:////var/lib/cloudmailin-exporter/state.db"
    )
    # Credentials come from mounted files, never from plain environment values.
    assert "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD" not in env
    assert env["CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE"].startswith("/etc/")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (claim,) = kinds["PersistentVolumeClaim"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    (secret,) = kinds["Secret"]
    assert set(secret["data"]) == {"username", "password"}
    # Nothing optional is on by default.
    for kind in ("Ingress", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                 "PodDisruptionBudget", "ConfigMap"):  # fmt: skip
        assert kind not in kinds


def test_settings_in_the_deployment_are_ones_the_exporter_has() -> None:
    from exporter.settings import Settings, env_name  # noqa: PLC0415

    known = {env_name(n) for n in Settings.model_fields} | {
        env_name(n) + "_FILE" for n in Settings.model_fields
    }
    for values_file in CI_VALUES:
        for deployment in by_kind(install(load_values(values_file)))["Deployment"]:
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            names = {e["name"] for e in container["env"]}
            assert names <= known, names - known


def test_ingress_exposes_only_the_webhook() -> None:
    (ingress,) = by_kind(install(load_values(CHART / "ci/ingress-values.yaml")))["Ingress"]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == [
        {
            "path": "/events",
            "pathType": "Exact",
            "backend": {"service": {"name": "cm-cloudmailin-exporter", "port": {"name": "http"}}},
        }
    ]


def test_notes_give_the_exact_webhook_url() -> None:
    notes = install(load_values(CHART / "ci/ingress-values.yaml"))["notes"]
    assert "https://cloudmailin:PASSWORD@mail-metrics.example.com/events" in notes
    assert "kubectl get secret --namespace mail cm-cloudmailin-exporter" in notes
    assert "a-long-random-password" not in notes
    plain = install({"webhook": {"publicUrl": "https://hooks.example.org/"}})["notes"]
    assert "https://cloudmailin:PASSWORD@hooks.example.org/events" in plain
    assert "kubectl port-forward" in plain


def test_redis_replicas_share_the_store() -> None:
    kinds = by_kind(install(load_values(CHART / "ci/redis-replicas-values.yaml")))
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert "strategy" not in deployment["spec"]
    assert "PersistentVolumeClaim" not in kinds
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLOUDMAILIN_EXPORTER_STATE_URL"] == "redis://redis-master.mail.svc:6379/0"
    assert kinds["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


def test_dashboards_configmaps_carry_the_sidecar_label() -> None:
    maps = by_kind(install(load_values(CHART / "ci/monitoring-values.yaml"))).get("ConfigMap", [])
    shipped = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == shipped
    for configmap in maps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Email"}
        for text in configmap["data"].values():
            assert json.loads(text)["uid"]


def rendered_rules(values: dict[str, Any]) -> dict[str, Any]:
    (rule,) = by_kind(install(values))["PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def test_prometheus_rule_with_defaults_is_the_committed_rules_file(tmp_path: Path) -> None:
    spec = rendered_rules({"prometheusRule": {"enabled": True}})
    committed = yaml.safe_load((CHART / "files" / "rules.yaml").read_text())
    assert spec == committed
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump(spec))
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_thresholds_are_settable_from_values() -> None:
    spec = rendered_rules(load_values(CHART / "ci/tuned-rules-values.yaml"))
    rules = {r.get("alert") or r["record"]: r for g in spec["groups"] for r in g["rules"]}
    assert rules["CloudMailinBounceRatioHigh"]["expr"].startswith(
        "cloudmailin:bounce_ratio > 0.03\n"
    )
    assert rules["CloudMailinBounceRatioHigh"]["for"] == "30m"
    assert "> 900\n" in rules["CloudMailinSlowDelivery"]["expr"]
    assert (
        'cloudmailin_events_total{job="mail-metrics", kind=~"delivery"}'
        in (rules["cloudmailin:delivery_ratio"]["expr"])
    )


def test_values_defaults_are_the_rules_config_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["config"]
    defaults = MonitoringConfig().model_dump()
    assert values == {camel(k): v for k, v in defaults.items()}
    schema = json.loads((CHART / "values.schema.json").read_text())
    properties = schema["properties"]["prometheusRule"]["properties"]["config"]["properties"]
    assert set(properties) == {camel(k) for k in defaults}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount"),
        ({"replicaCount": 2, "state": {"store": "memory"}}, "replicaCount"),
        ({"replicaCont": 1}, "replicaCont"),
        ({"service": {"port": "http"}}, "port"),
        ({"state": {"store": "mysql"}}, "store"),
        ({"state": {"store": "redis"}}, "redis"),
        ({"state": {"store": "redis", "redis": {"url": "http://redis:6379"}}}, "url"),
        ({"prometheusRule": {"config": {"bounceRatioFor": "15 minutes"}}}, "bounceRatioFor"),
        ({"prometheusRule": {"config": {"bounceRatioWarning": 2}}}, "bounceRatioWarning"),
        ({"config": {"logLevel": "loud"}}, "logLevel"),
        ({"webhook": {"auth": {"username": "a:b"}}}, "username"),
        ({"webhook": {"publicUrl": "https://u:p@host"}}, "publicUrl"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ],
)
def test_bad_values_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        install(values)
    assert "schema" in str(failure.value).lower() or "values" in str(failure.value).lower()
    assert message in str(failure.value)


def test_every_value_is_commented() -> None:
    """Each leaf setting in values.yaml has a comment right above it (or above its list)."""
    free_form = ("resources:", "podSecurityContext:", "securityContext:", "labels:")
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    skip_below: int | None = None
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = None
        if line.strip() in free_form:
            skip_below = indent
        previous = lines[i - 1].strip()
        is_section = rest == "" and i + 1 < len(lines) and not lines[i + 1].strip().startswith("-")
        if is_section and line.strip() not in free_form:
            continue
        if not previous.startswith("#"):
            uncommented.append(key)
    assert uncommented == []
