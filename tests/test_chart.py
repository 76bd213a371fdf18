"""The Helm chart: strict lint, every ci/ values file rendered by Helm v4 and
validated against Kubernetes' schemas, secure defaults, the rules it ships,
and bad values refused with a clear message."""

from __future__ import annotations

import base64
import json
import shutil
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
        "scheme": "http",
        "honorLabels": False,
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


def test_a_sentinel_url_is_accepted_inline_and_from_a_secret() -> None:
    url = "redis+sentinel://:pw@redis.mail.svc:26379/mymaster/0"
    inline = by_kind(
        install({"replicaCount": 2, "state": {"store": "redis", "redis": {"url": url}}})
    )
    (secret,) = inline["Secret"]
    assert base64.b64decode(secret["data"]["state-url"]) == url.encode()
    kinds = by_kind(install(load_values(CHART / "ci/redis-sentinel-values.yaml")))
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLOUDMAILIN_EXPORTER_STATE_URL_FILE"] == "/etc/cloudmailin-exporter/redis/url"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["redis"]["secret"]["secretName"] == "cloudmailin-redis-sentinel"
    assert "Secret" not in kinds or all("state-url" not in s["data"] for s in kinds["Secret"])


def test_redis_replicas_share_the_store() -> None:
    kinds = by_kind(install(load_values(CHART / "ci/redis-replicas-values.yaml")))
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert "strategy" not in deployment["spec"]
    assert "PersistentVolumeClaim" not in kinds
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CLOUDMAILIN_EXPORTER_STATE_URL_FILE"] == "/etc/cloudmailin-exporter/redis/url"
    (secret,) = kinds["Secret"]
    assert base64.b64decode(secret["data"]["state-url"]) == b"redis://redis-master.mail.svc:6379/0"
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
        ({"replicaCont": 1}, "replicaCont"),
        ({"service": {"port": "http"}}, "port"),
        ({"state": {"store": "mysql"}}, "store"),
        ({"state": {"store": "redis"}}, "redis"),
        ({"state": {"store": "redis", "redis": {"url": "http://redis:6379"}}}, "url"),
        ({"state": {"store": "redis", "redis": {"url": "sentinel://s:26379/m/0"}}}, "url"),
        ({"prometheusRule": {"config": {"bounceRatioFor": "15 minutes"}}}, "bounceRatioFor"),
        ({"prometheusRule": {"config": {"bounceRatioWarning": 2}}}, "bounceRatioWarning"),
        ({"config": {"logLevel": "loud"}}, "logLevel"),
        ({"webhook": {"auth": {"username": "a:b"}}}, "username"),
        ({"webhook": {"publicUrl": "https://u:p@host"}}, "publicUrl"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        # A shared or unwritable volume would break "one SQLite file, one writer".
        ({"persistence": {"accessModes": ["ReadWriteMany"]}}, "/persistence/accessModes/0"),
        ({"persistence": {"accessModes": ["ReadOnlyMany"]}}, "/persistence/accessModes/0"),
        (
            {"persistence": {"accessModes": ["ReadWriteOnce", "ReadWriteMany"]}},
            "/persistence/accessModes/1",
        ),
        ({"persistence": {"accessModes": []}}, "/persistence/accessModes"),
        ({"persistence": {"accessModes": "ReadWriteOnce"}}, "/persistence/accessModes"),
        ({"serviceMonitor": {"scheme": "ftp"}}, "/serviceMonitor/scheme"),
        ({"serviceMonitor": {"honorLabels": "yes"}}, "/serviceMonitor/honorLabels"),
        ({"serviceMonitor": {"tlsConfig": "insecure"}}, "/serviceMonitor/tlsConfig"),
        ({"serviceMonitor": {"interval": "every minute"}}, "/serviceMonitor/interval"),
        ({"serviceMonitor": {"targetLabels": "app"}}, "/serviceMonitor/targetLabels"),
        ({"global": "registry.example.com"}, "/global"),
        ({"global": {"imageRegistry": 5}}, "/global/imageRegistry"),
        ({"global": {"imagePullSecrets": [{"nom": "x"}]}}, "/global/imagePullSecrets/0"),
    ],
)
def test_bad_values_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        install(values)
    assert "schema" in str(failure.value).lower() or "values" in str(failure.value).lower()
    assert message in str(failure.value)


@pytest.mark.parametrize("replicas", [2, 3, 10])
@pytest.mark.parametrize(
    ("store", "reason"),
    [
        ("sqlite", "one SQLite file has one writer"),
        ("memory", "each pod would keep its own pending registrations"),
    ],
)
def test_more_replicas_than_the_store_allows_are_refused_with_the_reason(
    replicas: int, store: str, reason: str
) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        install({"replicaCount": replicas, "state": {"store": store}})
    message = str(failure.value)
    assert f"replicaCount is {replicas} with state.store={store}" in message
    assert reason in message
    assert "state.store=redis" in message


@pytest.mark.parametrize("replicas", [0, 1])
@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_one_replica_or_none_is_fine_with_a_per_pod_store(replicas: int, store: str) -> None:
    (deployment,) = by_kind(install({"replicaCount": replicas, "state": {"store": store}}))[
        "Deployment"
    ]
    assert deployment["spec"]["replicas"] == replicas


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"persistence": {"enabled": False}},
        {"persistence": {"existingClaim": "state"}},
        {"persistence": {"accessModes": ["ReadWriteOncePod"]}},
    ],
    ids=["claim", "emptydir", "existing-claim", "rwop"],
)
def test_sqlite_pods_are_replaced_not_overlapped(values: dict[str, Any]) -> None:
    """A rolling update would start the new pod while the old one holds the volume
    and the file's lock: it could not attach the volume, or would exit on the lock."""
    kinds = by_kind(install(values))
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    for claim in kinds.get("PersistentVolumeClaim", []):
        assert set(claim["spec"]["accessModes"]) <= {"ReadWriteOnce", "ReadWriteOncePod"}


def pod_spec(release: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = by_kind(release)["Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def pod_spec_metadata(release: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = by_kind(release)["Deployment"]
    metadata: dict[str, Any] = deployment["spec"]["template"]["metadata"]
    return metadata


SECRET_SETTINGS = {"BASIC_AUTH_USERNAME", "BASIC_AUTH_PASSWORD", "BEARER_TOKEN", "STATE_URL"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_credentials_reach_the_pod_as_files_that_the_kubelet_can_update(
    values_file: Path,
) -> None:
    """Every secret setting is a *_FILE path to a key of a Secret volume mounted
    whole (a subPath mount is never updated), and no secret value is inline."""
    values = load_values(values_file)
    release = install(values)
    spec = pod_spec(release)
    (container,) = spec["containers"]
    secret_volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for mount in container["volumeMounts"]:
        assert not {"subPath", "subPathExpr"} & set(mount), mount
    files: dict[str, tuple[str, str]] = {}  # path in the pod -> (Secret, key)
    for name, volume in secret_volumes.items():
        for item in volume["items"]:
            path = mounts[name]["mountPath"] + "/" + item["path"]
            files[path] = (volume["secretName"], item["key"])
    env = {e["name"]: e for e in container["env"]}
    for setting in SECRET_SETTINGS - {"STATE_URL"}:
        assert f"CLOUDMAILIN_EXPORTER_{setting}" not in env, setting
    # The state URL is inline only where it cannot hold a password (memory, SQLite).
    if "CLOUDMAILIN_EXPORTER_STATE_URL" in env:
        inline = env["CLOUDMAILIN_EXPORTER_STATE_URL"]["value"]
        assert inline.startswith(("memory://", "sqlite:///")), inline
    # Environment variables from a Secret (valueFrom) are fixed at container start.
    assert not any("valueFrom" in e for e in env.values())
    file_settings = {n: e["value"] for n, e in env.items() if n.endswith("_FILE")}
    assert {"CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE"} <= set(file_settings)
    for name, path in file_settings.items():
        assert name.removeprefix("CLOUDMAILIN_EXPORTER_").removesuffix("_FILE") in SECRET_SETTINGS
        assert path in files, (name, path, files)
    # Each Secret the volumes name is the chart's own (rendered) or one the values name.
    rendered = {s["metadata"]["name"]: s for s in by_kind(release).get("Secret", [])}
    for path, (secret, key) in files.items():
        if secret in rendered:
            assert key in rendered[secret]["data"], (path, key)
        else:
            assert secret in (
                values.get("webhook", {}).get("auth", {}).get("existingSecret"),
                values.get("state", {}).get("redis", {}).get("existingSecret"),
            )
    # No secret value appears anywhere in the Deployment.
    deployment_text = json.dumps(by_kind(release)["Deployment"])
    for manifest in rendered.values():
        for key in ("password", "bearer-token", "state-url"):
            if key in manifest["data"]:
                assert base64.b64decode(manifest["data"][key]).decode() not in deployment_text


def test_a_new_password_changes_the_secret_and_not_the_pod_template() -> None:
    """`helm upgrade` with a rotated password must not restart the pod (with SQLite a
    restart is downtime): the Secret changes and the mounted file follows."""
    before = install({"webhook": {"auth": {"password": "old-password-0123456789"}}})
    after = install({"webhook": {"auth": {"password": "new-password-9876543210"}}})
    assert pod_spec(before) == pod_spec(after)
    (deployment_before,) = by_kind(before)["Deployment"]
    (deployment_after,) = by_kind(after)["Deployment"]
    assert deployment_before == deployment_after
    (secret_before,) = by_kind(before)["Secret"]
    (secret_after,) = by_kind(after)["Secret"]
    assert base64.b64decode(secret_after["data"]["password"]) == b"new-password-9876543210"
    assert secret_before["data"]["password"] != secret_after["data"]["password"]


def test_a_redis_url_in_the_values_goes_through_the_charts_secret() -> None:
    url = "redis://:s3cret-pass@redis-master.mail.svc:6379/0"
    release = install({"replicaCount": 2, "state": {"store": "redis", "redis": {"url": url}}})
    assert "s3cret-pass" not in json.dumps(by_kind(release)["Deployment"])
    (secret,) = by_kind(release)["Secret"]
    assert base64.b64decode(secret["data"]["state-url"]).decode() == url
    # A different store is a reconnect: that one does roll the pods.
    other = install({"replicaCount": 2, "state": {"store": "redis", "redis": {"url": url + "1"}}})
    assert (
        pod_spec_metadata(other)["annotations"]["checksum/state-url"]
        != pod_spec_metadata(release)["annotations"]["checksum/state-url"]
    )
    annotated = install(
        {
            "replicaCount": 2,
            "state": {"store": "redis", "redis": {"url": url}},
            "podAnnotations": {"example.com/team": "mail"},
        }
    )
    assert set(pod_spec_metadata(annotated)["annotations"]) == {
        "example.com/team",
        "checksum/state-url",
    }
    # With the webhook Secret supplied, the chart's Secret carries the Redis URL alone.
    only_url = install(
        {
            "state": {"store": "redis", "redis": {"url": url}},
            "webhook": {"auth": {"existingSecret": "hooks"}},
        }
    )
    (secret,) = by_kind(only_url)["Secret"]
    assert set(secret["data"]) == {"state-url"}
    # A URL kept in the user's Secret is the user's to roll out.
    template = pod_spec_metadata(install(load_values(CHART / "ci/redis-secret-values.yaml")))
    assert "checksum/state-url" not in (template.get("annotations") or {})


def test_notes_tell_gitops_users_to_bring_their_own_secret() -> None:
    generated = install()["notes"]
    assert "helm template" in generated
    assert "webhook.auth.existingSecret" in generated
    assert "without a restart" in generated
    own = install(load_values(CHART / "ci/existing-secret-values.yaml"))["notes"]
    assert "helm template" not in own
    assert "cloudmailin-webhook" in own
    assert "without a restart" in own


def test_servicemonitor_takes_what_prometheus_community_charts_offer() -> None:
    values = load_values(CHART / "ci/servicemonitor-tls-values.yaml")
    (monitor,) = by_kind(install(values))["ServiceMonitor"]
    wanted = values["serviceMonitor"]
    assert monitor["metadata"]["namespace"] == "monitoring"
    # Wherever the ServiceMonitor lives, it selects the Service in the release namespace.
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mail"]}
    assert monitor["metadata"]["annotations"] == wanted["annotations"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["targetLabels"] == wanted["targetLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    for key in ("interval", "scrapeTimeout", "honorLabels", "scheme", "tlsConfig",
                "relabelings", "metricRelabelings"):  # fmt: skip
        assert endpoint[key] == wanted[key], key
    # Empty durations leave Prometheus's own defaults in force.
    bare = install({"serviceMonitor": {"enabled": True, "interval": "", "scrapeTimeout": ""}})
    (endpoint,) = by_kind(bare)["ServiceMonitor"][0]["spec"]["endpoints"]
    assert not {"interval", "scrapeTimeout", "tlsConfig"} & set(endpoint)


def test_global_image_settings_of_a_parent_chart_are_honoured() -> None:
    values = load_values(CHART / "ci/subchart-global-values.yaml")
    spec = pod_spec(install(values))
    (container,) = spec["containers"]
    assert container["image"] == (
        "registry.example.com/cloudmailin-exporter/cloudmailin-exporter:0.1.0"
    )
    assert spec["imagePullSecrets"] == [
        {"name": "ghcr-credentials"},
        {"name": "regcred"},
        {"name": "mirror-credentials"},
    ]
    (container,) = pod_spec(install())["containers"]
    assert container["image"] == "ghcr.io/cloudmailin-exporter/cloudmailin-exporter:0.1.0"
    bare = install({"image": {"registry": "", "repository": "mirror.local/cme", "tag": "1.2.3"}})
    assert pod_spec(bare)["containers"][0]["image"] == "mirror.local/cme:1.2.3"


def test_the_chart_works_as_a_subchart(tmp_path: Path) -> None:
    """A real parent chart with this one under charts/: Helm hands it `global`."""
    parent = tmp_path / "platform"
    shutil.copytree(CHART, parent / "charts" / CHART.name)
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [{"name": CHART.name, "version": "0.1.0"}],
            }
        )
    )
    (parent / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "x", "team": "mail"},
                CHART.name: {"webhook": {"auth": {"password": "from-the-parent-0123"}}},
            }
        )
    )
    with helm_python.Config(storage_driver="memory", namespace="mail") as config:
        release = config.install(str(parent), "platform", {}, dry_run="client", namespace="mail")
    kinds = by_kind(release)
    (deployment,) = kinds["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "x/cloudmailin-exporter/cloudmailin-exporter:0.1.0"
    (secret,) = kinds["Secret"]
    assert base64.b64decode(secret["data"]["password"]) == b"from-the-parent-0123"


def test_renders_without_a_cluster_are_stable_only_with_an_existing_secret() -> None:
    """What `helm template` does under GitOps: no cluster to look the generated password
    up in, so it changes on every render; with existingSecret nothing changes."""
    first, second = (secret_password(install()) for _ in range(2))
    assert first != second
    assert len(first) == len(second) == 32
    values = load_values(CHART / "ci/existing-secret-values.yaml")
    assert install(values)["manifest"] == install(values)["manifest"]
    assert "Secret" not in by_kind(install(values))


def secret_password(release: dict[str, Any]) -> str:
    (secret,) = by_kind(release)["Secret"]
    return base64.b64decode(secret["data"]["password"]).decode()
