"""The Dockerfile, read with Docker's own parser (no engine runs here), held
against the chart and the package: user, port, entry point, health check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
import yaml

from bench.processes import free_port
from tests.chart import CHART, by_kind, install
from tests.servers import exporter_process

pytestmark = pytest.mark.e2e  # Helm renders the chart it is checked against

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = dockerfile.parse_file(str(ROOT / "Dockerfile"))


def instructions(name: str) -> list[dockerfile.Command]:
    return [c for c in COMMANDS if c.cmd == name]


def final_stage() -> list[dockerfile.Command]:
    starts = [i for i, c in enumerate(COMMANDS) if c.cmd == "FROM"]
    return list(COMMANDS[starts[-1] :])


def test_base_images_are_pinned_to_one_patch_release_and_the_runtime_is_slim() -> None:
    images = [command.value[0] for command in instructions("FROM")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", images[-1]), images
    # The build stage compiles the record table: the same Python and Debian
    # release as the runtime, so the compiled module loads there.
    for image in images[:-1]:
        assert image == images[-1].replace("-slim", ""), images


def test_the_build_compiles_the_record_table_or_fails() -> None:
    (install_step,) = [c for c in instructions("RUN") if "pip install" in c.value[0]]
    assert "native.available()" in install_step.value[0]
    copied = {v for c in instructions("COPY") for v in c.value}
    assert "setup.py" in copied


def test_runs_as_the_chart_s_non_root_user() -> None:
    (user,) = [c for c in final_stage() if c.cmd == "USER"]
    uid, _, gid = user.value[0].partition(":")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"] != 0
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]


def test_port_matches_the_chart_and_the_default_setting() -> None:
    (expose,) = instructions("EXPOSE")
    (deployment,) = by_kind(install())["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert int(expose.value[0]) == container["ports"][0]["containerPort"] == 9878


def test_entry_point_is_the_package_s_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (entry,) = instructions("ENTRYPOINT")
    assert entry.json
    assert list(entry.value) == list(project["scripts"])
    (cmd,) = [c for c in final_stage() if c.cmd == "CMD"]
    assert list(cmd.value) == ["serve"]


def test_installs_only_runtime_dependencies_the_readme_way() -> None:
    (install_step,) = [c for c in instructions("RUN") if "pip install" in c.value[0]]
    text = install_step.value[0]
    assert "-c constraints.txt ." in text
    assert "[test]" not in text
    assert "-e " not in text
    copied = {v for c in instructions("COPY") for v in c.value}
    assert {"constraints.txt", "pyproject.toml", "exporter"} <= copied
    assert "tests" not in copied


def test_healthcheck_probes_healthz_and_works(tmp_path: Path) -> None:
    (check,) = instructions("HEALTHCHECK")
    assert check.value[0] == "CMD"
    argv = list(check.value[1:])
    assert argv[:2] == ["python", "-c"]
    with exporter_process(tmp_path) as proc:
        port = proc.url.rsplit(":", 1)[1]
        env = {**os.environ, "CLOUDMAILIN_EXPORTER_PORT": port}
        healthy = subprocess.run([sys.executable, *argv[1:]], env=env, check=False, timeout=10)
        assert healthy.returncode == 0
    env = {**os.environ, "CLOUDMAILIN_EXPORTER_PORT": str(free_port())}
    dead = subprocess.run(
        [sys.executable, *argv[1:]], env=env, check=False, timeout=10, capture_output=True
    )
    assert dead.returncode != 0
