"""The chart README's values table, generated from the `# --` comments of values.yaml:
every value is in it with its real default, and values.yaml that cannot make a
complete table is refused with the key named. (test_generated holds the committed
README to the generator.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.monitoring.chart_readme import ChartReadmeError, render, rows, values_table
from tests.chart import CHART

README = CHART / "README.md"


def table_rows(markdown: str) -> dict[str, tuple[str, Any, str]]:
    """key -> (type, default, description) of the README's values table, read back."""
    out = {}
    for line in markdown.splitlines():
        if not line.startswith("| ") or line.startswith("| Key "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 4, line
        key, kind, default, description = cells
        out[key] = (kind, json.loads(default.strip("`")), description)
    return out


def leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every value that is not a non-empty map, by dotted key."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_value_is_in_the_committed_readme_with_its_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = table_rows(README.read_text())
    for key, value in leaves(values).items():
        # The row is the value itself, or a map documented as a whole that holds it.
        parts = key.split(".")
        owners = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        owner = next((o for o in owners if o in table), None)
        assert owner is not None, f"{key} is missing from the chart README"
        default = table[owner][1]
        for part in parts[len(owner.split(".")) :]:
            default = default[part]
        assert default == value, key
        assert table[owner][2], f"{owner} has no description"


def test_readme_keeps_the_template_prose_and_drops_placeholders() -> None:
    text = README.read_text()
    assert "{{" not in text
    assert "existingSecret" in text.split("## Values")[0]
    assert "helm template" in text
    assert text.count("| Key | Type | Default | Description |") == 1


def test_types_defaults_and_multiline_descriptions_follow_helm_docs() -> None:
    text = """# A plain comment that is not part of any description.
# -- First line
# second line.
replicas: 2
image:
  # -- Registry.
  registry: ghcr.io
  # -- Pull secrets.
  pullSecrets: []
# -- Selector with a | pipe.
selector: 'job=~"a|b"'
# -- Resources, as one row.
resources:
  limits:
    memory: 1Gi
# -- Ratio.
ratio: 0.5
# -- Switch.
enabled: false
"""
    found = {r.key: r for r in rows(text)}
    assert list(found) == [
        "replicas", "image.registry", "image.pullSecrets", "selector", "resources", "ratio",
        "enabled",
    ]  # fmt: skip
    assert found["replicas"].description == "First line second line."
    assert [r.type for r in found.values()] == [
        "int", "string", "list", "string", "object", "float", "bool",
    ]  # fmt: skip
    assert found["resources"].default == {"limits": {"memory": "1Gi"}}
    table = table_rows(values_table(text))
    assert table["selector"] == ("string", 'job=~"a|b"', "Selector with a | pipe.")
    assert table["resources"][1] == {"limits": {"memory": "1Gi"}}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("# A comment without the marker.\nport: 80\n", "port: no `# --` description"),
        ("port: 80\n", "port: no `# --` description"),
        ("image:\n  # -- Tag.\n  tag: x\n  pullPolicy: Always\n", "image.pullPolicy"),
        ("# -- A section.\nimage:\n  # -- Tag.\n  tag: x\n", "image: described as a whole"),
        ("# -- Ports.\nports: {}\ntimeout: 5\n", "timeout: no `# --` description"),
    ],
)
def test_an_undescribed_value_is_refused_by_name(text: str, named: str) -> None:
    with pytest.raises(ChartReadmeError) as failure:
        rows(text)
    assert named in str(failure.value)


def test_a_values_file_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(ChartReadmeError, match="top level must be a map"):
        rows("- a\n- b\n")


def test_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "README.md.gotmpl").write_text('{{ template "chart.badges" . }}\n')
    with pytest.raises(ChartReadmeError, match="unknown placeholders badges"):
        render(chart)
