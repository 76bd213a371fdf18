"""The chart's README.md: its template with a values table built from values.yaml.

Like helm-docs (https://github.com/norwoodj/helm-docs), whose conventions it follows so
that either tool reads the same files: a `# --` comment above a value describes it, and
continues over the comment lines below it up to the value; a map with no described keys
of its own is one row (`resources`, `labels`); a map whose keys are described is a
section, and its keys are the rows. `README.md.gotmpl` in the chart holds the prose,
with helm-docs' `{{ template "chart.<name>" . }}` placeholders.

Every value must be described: an undescribed one is an error naming it, so the README
cannot silently lose a setting.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = "README.md.gotmpl"
PLACEHOLDER = re.compile(r"\{\{\s*template\s+\"chart\.(\w+)\"\s+\.\s*\}\}")
DESCRIPTION = re.compile(r"^\s*# --\s?(.*)$")
CONTINUATION = re.compile(r"^\s*#\s?(.*)$")
# bool before int: a bool is an int to isinstance.
TYPE_NAMES = (
    (bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (list, "list"),
    (dict, "object"),
)  # fmt: skip


class ChartReadmeError(ValueError):
    """values.yaml or the template cannot make a README: the message says where."""


@dataclass(frozen=True)
class Row:
    """One value of the table: dotted key, helm-docs type, JSON default, description."""

    key: str
    type: str
    default: Any
    description: str


def describe_above(lines: list[str], line: int) -> str | None:
    """The `# --` description in the comment block right above 0-based `line`, if any."""
    block: list[str] = []
    index = line - 1
    while index >= 0 and lines[index].lstrip().startswith("#"):
        block.insert(0, lines[index])
        index -= 1
    for start, text in enumerate(block):
        found = DESCRIPTION.match(text)
        if found:
            rest = [CONTINUATION.match(t) for t in block[start + 1 :]]
            words = [found.group(1), *(m.group(1) for m in rest if m)]
            return " ".join(w.strip() for w in words if w.strip())
    return None


def type_name(value: Any) -> str:
    """helm-docs' name for a value's type (null counts as a string, as there)."""
    return next((name for kind, name in TYPE_NAMES if isinstance(value, kind)), "string")


def rows(values_text: str) -> list[Row]:
    """The described values of a values.yaml text, in file order.

    Raises ChartReadmeError naming every value without a `# --` description, and every
    map described both as a whole and key by key.
    """
    lines = values_text.splitlines()
    root = yaml.compose(values_text)
    values = yaml.safe_load(values_text)
    if not isinstance(root, MappingNode) or not isinstance(values, dict):
        raise ChartReadmeError("values.yaml: the top level must be a map")
    found: list[Row] = []
    problems: list[str] = []

    def documented_inside(node: Node) -> bool:
        if not isinstance(node, MappingNode):
            return False
        return any(
            describe_above(lines, key.start_mark.line) is not None or documented_inside(value)
            for key, value in node.value
        )

    def walk(node: MappingNode, prefix: str, data: dict[str, Any]) -> None:
        for key_node, value_node in node.value:
            assert isinstance(key_node, ScalarNode)
            key = prefix + str(key_node.value)
            value = data[key_node.value]
            description = describe_above(lines, key_node.start_mark.line)
            if isinstance(value_node, MappingNode) and documented_inside(value_node):
                if description is not None:
                    problems.append(f"{key}: described as a whole and key by key")
                walk(value_node, key + ".", value)
            elif description is None:
                problems.append(f"{key}: no `# --` description")
            else:
                found.append(Row(key, type_name(value), value, description))

    walk(root, "", values)
    if problems:
        raise ChartReadmeError("values.yaml (line order):\n  " + "\n  ".join(problems))
    return found


def cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def values_table(values_text: str) -> str:
    """The helm-docs values table of a values.yaml text."""
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows(values_text):
        default = json.dumps(row.default, ensure_ascii=False)
        out.append(f"| {row.key} | {row.type} | `{cell(default)}` | {cell(row.description)} |")
    return "\n".join(out) + "\n"


def render(chart: Path) -> str:
    """The README of the chart in directory `chart`, from its template and values."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    fields = {
        "name": meta["name"],
        "description": meta["description"],
        "version": meta["version"],
        "appVersion": meta["appVersion"],
        "kubeVersion": meta.get("kubeVersion", ""),
        "valuesTable": values_table((chart / "values.yaml").read_text()),
    }
    template = (chart / TEMPLATE).read_text()
    unknown = sorted({m for m in PLACEHOLDER.findall(template) if m not in fields})
    if unknown:
        raise ChartReadmeError(f"{TEMPLATE}: unknown placeholders {', '.join(unknown)}")
    return PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]), template)


def outputs(chart: Path) -> dict[Path, str]:
    """The generated README, keyed by its path relative to the repository root."""
    return {chart / "README.md": render(ROOT / chart)}
