"""The pod the chart renders, run for real: the installed exporter started with the
rendered container's environment and its Secret volumes laid out as the kubelet mounts
them answers the rendered probes and takes webhooks with the rendered credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.processes import free_port
from tests.chart import CHART, by_kind, install, load_values, pod_environment
from tests.servers import eventually, exporter_process

pytestmark = pytest.mark.e2e  # the Helm engine and exporter processes

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
EVENT = {"kind": "registration", "recipient": "a@example.net", "message_id": "m-1"}


def container(release: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = by_kind(release)["Deployment"]
    (exporter,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = exporter
    return result


def probe_paths(exporter: dict[str, Any]) -> list[str]:
    """The probes' paths, after checking that they look where the exporter listens."""
    ports = {p["name"]: p["containerPort"] for p in exporter["ports"]}
    env = {e["name"]: e["value"] for e in exporter["env"]}
    assert int(env["CLOUDMAILIN_EXPORTER_PORT"]) == ports["http"]
    paths = []
    for probe in PROBES:
        get = exporter[probe]["httpGet"]
        assert ports.get(get["port"], get["port"]) == ports["http"], probe
        paths.append(get["path"])
    return paths


def unreachable_redis() -> str:
    """A Redis URL where nothing listens: the state store is down from the start."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("values", "existing", "credentials"),
    [
        pytest.param({}, None, None, id="defaults-sqlite"),
        pytest.param({"state": {"store": "memory"}}, None, None, id="memory"),
        pytest.param(
            load_values(CHART / "ci/existing-secret-values.yaml"),
            {"cloudmailin-webhook": {"user": "hooks", "pass": "from-vault-123", "token": "tk"}},
            ("hooks", "from-vault-123"),
            id="existing-secret",
        ),
    ],
)
def test_rendered_pod_answers_its_probes_and_its_credentials(
    tmp_path: Path,
    values: dict[str, Any],
    existing: dict[str, dict[str, str]] | None,
    credentials: tuple[str, str] | None,
) -> None:
    release = install(values)
    exporter = container(release)
    env = pod_environment(release, tmp_path / "pod", existing)
    if credentials is None:
        (secret,) = by_kind(release)["Secret"]
        password = (tmp_path / "pod/etc/cloudmailin-exporter/auth/password").read_text()
        assert len(password) >= 16, "the chart generates a long password"
        assert secret["data"]["password"]
        credentials = ("cloudmailin", password)
    with exporter_process(tmp_path, env) as process, httpx.Client(base_url=process.url) as http:
        for path in probe_paths(exporter):
            assert http.get(path).status_code == 200, path
        accepted = http.post("/events", json={"events": [EVENT]}, auth=credentials)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["accepted"] == 1
        refused = http.post("/events", json={"events": [EVENT]}, auth=(credentials[0], "wrong"))
        assert refused.status_code == 401
    if values.get("state", {}).get("store", "sqlite") == "sqlite":
        assert list((tmp_path / "pod/var/lib/cloudmailin-exporter").glob("state.db*"))


def test_readiness_stays_200_while_the_state_store_is_down(tmp_path: Path) -> None:
    """Kubernetes would take every replica out of the Service at once on a 503: a store
    outage shows in the gauge and the /readyz body, never in the probes' status."""
    url = unreachable_redis()
    release = install({"replicaCount": 2, "state": {"store": "redis", "redis": {"url": url}}})
    exporter = container(release)
    env = pod_environment(release, tmp_path / "pod")
    assert (tmp_path / "pod/etc/cloudmailin-exporter/redis/url").read_text() == url
    password = (tmp_path / "pod/etc/cloudmailin-exporter/auth/password").read_text()
    with exporter_process(tmp_path, env) as process, httpx.Client(base_url=process.url) as http:
        accepted = http.post("/events", json={"events": [EVENT]}, auth=("cloudmailin", password))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["accepted"] == 1
        for path in probe_paths(exporter):
            assert http.get(path).status_code == 200, path
        assert eventually(lambda: http.get("/readyz").json()["state_store"] == "down", 10), (
            "the /readyz body never said the store is down"
        )
        assert "cloudmailin_state_store_up 0.0" in http.get("/metrics").text
        for path in probe_paths(exporter):
            assert http.get(path).status_code == 200, path
