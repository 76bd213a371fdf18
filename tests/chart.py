"""Rendering the chart with the real Helm v4 engine (helm-python-sdk), offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "cloudmailin-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Helm must not find a real cluster from the tests.
os.environ["KUBECONFIG"] = str(ROOT / "nonexistent-kubeconfig")


def load_values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return values


def install(values: dict[str, Any] | None = None, namespace: str = "mail") -> dict[str, Any]:
    """`helm install --dry-run=client`: schema checked, YAML parsed, notes rendered."""
    with helm_python.Config(storage_driver="memory", namespace=namespace) as config:
        release: dict[str, Any] = config.install(
            str(CHART), "cm", values or {}, dry_run="client", namespace=namespace
        )
        return release


def documents(release: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def by_kind(release: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in documents(release):
        out.setdefault(doc["kind"], []).append(doc)
    return out


def render_templates(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Every template, hooks included (helm test pods), as Helm renders it."""
    chart = helm_python.Chart.load(str(CHART))
    rendered: dict[str, str] = chart.render(values or {}, name="cm", namespace="mail")
    return rendered
