"""Rendering the chart with the real Helm v4 engine (helm-python-sdk), offline."""

from __future__ import annotations

import base64
import os
import shutil
import time
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


def kubelet_secret_volume(directory: Path, files: dict[str, str]) -> None:
    """Write (or update) a Secret volume the way the kubelet's AtomicWriter does.

    Each key is a symlink `key -> ..data/key`; `..data` points at a timestamped
    directory. An update writes a new directory and swaps `..data` with one rename,
    so a reader sees the old files or the new ones, never a mix, and each file's
    identity (inode) changes. This is why a subPath mount, which binds the first
    file itself, never sees an update.
    """
    directory.mkdir(parents=True, exist_ok=True)
    version = directory / f"..{time.time_ns()}"
    version.mkdir()
    for key, text in files.items():
        (version / key).write_text(text)
    staged = directory / "..data_tmp"
    staged.unlink(missing_ok=True)
    staged.symlink_to(version.name)
    old = (directory / "..data").resolve() if (directory / "..data").is_symlink() else None
    staged.rename(directory / "..data")
    for key in files:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(Path("..data") / key)
    if old is not None and old != version:
        shutil.rmtree(old)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A rendered Secret's data, decoded."""
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def pod_environment(
    release: dict[str, Any], root: Path, existing: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The rendered exporter container's environment, with its volumes laid out under
    `root` as the kubelet would mount them (paths in the environment re-rooted there).

    Secret volumes take their data from the Secrets the chart rendered, or from
    `existing` (name -> decoded data) for Secrets the values name.
    """
    (deployment,) = [d for d in documents(release) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    rendered = {
        d["metadata"]["name"]: secret_data(d) for d in documents(release) if d["kind"] == "Secret"
    }
    secrets = {**rendered, **(existing or {})}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount_paths = []
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        mount_paths.append(mount["mountPath"])
        volume = volumes[mount["name"]]
        if "secret" in volume:
            data = secrets[volume["secret"]["secretName"]]
            items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
            kubelet_secret_volume(target, {i["path"]: data[i["key"]] for i in items})
        else:
            target.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for variable in container["env"]:
        value: str = variable["value"]
        for path in sorted(mount_paths, key=len, reverse=True):
            if path in value:
                value = value.replace(path, str(root / path.lstrip("/")), 1)
                break
        env[variable["name"]] = value
    return env
