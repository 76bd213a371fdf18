"""The documents say what the code does: settings, metrics, alerts, chart values, links.

Each test reads a table or a section of a document and holds it to the thing it
describes (the Settings class, a live /metrics, the generated rules, values.yaml,
the files on disk), in both directions where a stale line would mislead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.settings import Settings, env_name
from tests.servers import Running

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RUNBOOKS = (ROOT / "docs/runbooks.md").read_text()
OPERATIONS = (ROOT / "docs/operations.md").read_text()
RULES_FILE = ROOT / "helm/cloudmailin-exporter/files/rules.yaml"
# The documents a reader reaches from the README, and which may link to each other.
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "bench/README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "helm").rglob("README.md")),
]


def without_code(markdown: str) -> str:
    """The markdown without fenced code blocks, whose `#` lines are not headings."""
    return re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a whole heading line) up to the next heading of its level."""
    level = heading.split(" ", 1)[0]
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    end = re.search(rf"^{level} ", markdown[start:], re.MULTILINE)
    return markdown[start:] if end is None else markdown[start : start + end.start()]


def table(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in `text`, as lists of cells."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "no table"
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def code(cell: str) -> str:
    """The first `code span` of a table cell, or the cell's first word without one."""
    found = re.search(r"`([^`]*)`", cell)
    return found.group(1) if found else cell.split(maxsplit=1)[0]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower-case, punctuation dropped, spaces to -."""
    out: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", without_code(markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# Settings


def settings_rows() -> dict[str, list[str]]:
    rows = table(section(README, "## Settings"))
    return {code(row[0]): row for row in rows}


def documented_default(cell: str) -> object:
    if cell.startswith("unset"):
        return None
    if cell.startswith("empty"):
        return ()
    return code(cell)


def test_the_settings_table_lists_every_setting_and_no_other() -> None:
    rows = settings_rows()
    assert set(rows) == {env_name(name) for name in Settings.model_fields}


def test_each_setting_row_has_its_flag_and_default() -> None:
    rows = settings_rows()
    for name, field in Settings.model_fields.items():
        _, flag, _, default = rows[env_name(name)]
        assert code(flag) == "--" + name.replace("_", "-"), name
        documented = documented_default(default)
        actual = field.default
        if actual is None or actual == ():
            assert documented == actual, name
        elif isinstance(actual, bool):
            assert documented == str(actual).lower(), name
        elif isinstance(actual, int | float):
            assert isinstance(documented, str), name
            assert float(documented) == actual, name
        else:
            assert documented == actual, name


# Metrics


def metrics_rows() -> dict[str, tuple[str, set[str]]]:
    """Name -> (type, label names) from the README's metrics table."""
    out = {}
    for name, kind, labels, _ in table(section(README, "## Metrics")):
        label_names = {
            part.strip() for part in re.sub(r"\([^)]*\)", "", labels).split(",") if part.strip()
        }
        out[code(name)] = (kind, label_names)
    return out


def test_the_metrics_table_is_what_a_live_exporter_exports(exporter: Running) -> None:
    exported: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(exporter.client.get("/metrics").text):
        if not family.name.startswith("cloudmailin_"):
            continue
        # The parser names a counter's family without its _total suffix.
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {label for s in family.samples for label in s.labels} - {"le"}
        exported[name] = (family.type, labels)
    assert metrics_rows() == exported


# Alerts and recording rules


def test_every_alert_has_a_runbook_section_at_its_runbook_url() -> None:
    sections = anchors(RUNBOOKS)
    alerts = [rule for rule in rules() if "alert" in rule]
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.fragment in sections, name
        body = section(RUNBOOKS, f"## {name}")
        assert name.lower() == url.fragment, name
        severity = rule["labels"]["severity"]
        assert body.lstrip().startswith(f"*{severity}.*"), name


def test_every_runbook_section_is_an_alert() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    headings = set(re.findall(r"^## (.+)$", without_code(RUNBOOKS), re.MULTILINE))
    assert headings - {"What the alerts read"} == alerts


def test_the_readme_defines_every_severity_the_alerts_use() -> None:
    used = {rule["labels"]["severity"] for rule in rules() if "alert" in rule}
    defined = set(re.findall(r"^- \*\*(\w+)\*\*:", section(README, "### Severities"), re.M))
    assert defined == used


def test_the_recording_rules_table_lists_every_record() -> None:
    records = {rule["record"] for rule in rules() if "record" in rule}
    documented = {code(row[0]) for row in table(section(RUNBOOKS, "## What the alerts read"))}
    assert documented == records


def kinds(expr: str) -> list[frozenset[str]]:
    return [frozenset(m.split("|")) for m in re.findall(r'kind=~"([^"]+)"', expr)]


def test_the_example_bounce_ratio_is_the_recording_rule() -> None:
    by_record = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}
    rule = by_record["cloudmailin:bounce_ratio"]
    # The rule divides by the outcomes rule: its kinds are the denominator's.
    assert "cloudmailin:outcomes:increase" in rule
    expected = [*kinds(rule), *kinds(by_record["cloudmailin:outcomes:increase"])]
    window = re.findall(r"\[(\w+)\]", rule)
    promql = README.split("```promql\n", 1)[1].split("```", 1)[0]
    example = promql.split("# Bounce ratio", 1)[1].split("\n\n", 1)[0]
    example = "\n".join(line for line in example.splitlines() if not line.startswith("#"))
    assert kinds(example) == expected
    assert re.findall(r"\[(\w+)\]", example) == window * 2


# Chart values: tests/test_chart_readme.py holds every value to the chart's generated
# README, which docs/operations.md links to.


# Links


def links(document: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", without_code(document.read_text()))


def test_relative_links_resolve_to_files_and_headings() -> None:
    checked = 0
    for document in DOCUMENTS:
        for link in links(document):
            if urlsplit(link).scheme:
                continue
            path, _, anchor = link.partition("#")
            target = (document.parent / path).resolve() if path else document
            where = f"{document.relative_to(ROOT)}: {link}"
            assert target.is_file(), where
            if anchor:
                assert target.suffix == ".md", where
                assert anchor in anchors(target.read_text()), where
            checked += 1
    assert checked > len(DOCUMENTS)


def test_the_readme_links_every_document() -> None:
    linked = {
        (ROOT / link.partition("#")[0]).resolve()
        for link in links(ROOT / "README.md")
        if not urlsplit(link).scheme
    }
    for document in [*DOCUMENTS[1:], ROOT / "LICENSE"]:
        assert document in linked, document.relative_to(ROOT)
