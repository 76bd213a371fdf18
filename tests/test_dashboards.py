"""The dashboards: built with Grafana's SDK, every metric they and the rules use is
exposed, and every panel's queries return data from a real Prometheus."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporter.monitoring.dashboards import DASHBOARDS, panel_queries, render
from exporter.monitoring.preview import render_preview
from exporter.monitoring.rules import render_rules
from tests.servers import Running, running_exporter
from tests.stack import FAST, Drive, Prometheus, prometheus

ROOT = Path(__file__).resolve().parent.parent
STARTED = time.monotonic()
BOARDS = {name: json.loads(render(make())) for name, make in DASHBOARDS.items()}
RULES = yaml.safe_load((ROOT / "helm/cloudmailin-exporter/files/rules.yaml").read_text())
RECORDED = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
# Series Prometheus makes itself, not the exporter.
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
SUBSTITUTIONS = {
    "$job": "cloudmailin-exporter",
    "$namespace": "e2e",
    "$domain": "gmail.com",
    "$__rate_interval": "10s",
    "$__range": "1m",
}


def all_expressions() -> list[str]:
    exprs = [expr for board in BOARDS.values() for _, expr in panel_queries(board)]
    exprs += [r["expr"] for g in RULES["groups"] for r in g["rules"]]
    for board in BOARDS.values():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                exprs.append(variable["query"]["query"])
    return exprs


def metric_names(expr: str) -> set[str]:
    names = set()
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr):
        names.add(match.group(1))
    return names - {"by", "without", "on", "ignoring"}


def test_uids_titles_and_variables() -> None:
    uids = {board["uid"] for board in BOARDS.values()}
    assert uids == {"cloudmailin-delivery", "cloudmailin-exporter-health"}
    for board in BOARDS.values():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:3] == ["datasource", "job", "namespace"]
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            if panel["type"] not in ("table",):
                assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
    delivery = BOARDS["cloudmailin-delivery.json"]
    assert "domain" in [v["name"] for v in delivery["templating"]["list"]]


def test_alert_dashboard_links_point_at_real_dashboards() -> None:
    uids = {board["uid"] for board in BOARDS.values()}
    for group in RULES["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["annotations"]["dashboard_url"].rsplit("/", 1)[1] in uids


def test_every_metric_used_is_exposed_by_the_exporter() -> None:
    with running_exporter() as exporter:
        # One event of each kind so that every family has its samples.
        exporter.post([{"kind": "registration", "recipient": "a@x.example", "message_id": "m"}])
        text = exporter.client.get("/metrics").text
    exposed = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    used = set().union(*(metric_names(e) for e in all_expressions()))
    assert "cloudmailin_time_to_delivery_seconds_bucket" in used
    for name in used:
        if name in BUILTIN:
            continue
        if ":" in name:
            assert name in RECORDED, name
        else:
            assert name in exposed, name


@pytest.fixture(scope="module")
def fed_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Running, Prometheus]]:
    tmp = tmp_path_factory.mktemp("dashboards")
    rules = tmp / "rules.yaml"
    rules.write_text(render_rules(FAST))
    with (
        running_exporter(domain_min_events=1) as exporter,
        prometheus(tmp, exporter.url.split("//")[1], rules) as prom,
    ):
        # Enough bounces that an alert is pending, so "Active alerts" has rows.
        traffic = Drive(exporter, 120, bounce_ratio=0.1, spam_ratio=0.05)
        try:
            ready = [
                'cloudmailin:bounce_ratio:domain{domain="gmail.com"}',
                "cloudmailin:time_to_delivery_seconds:quantile",
                'ALERTS{alertname=~"CloudMailin.*"}',
                'rate(cloudmailin_events_total{kind="click"}[10s]) > 0',
            ]
            for expr in ready:
                assert prom.wait_for_data(expr, 60), expr
            yield exporter, prom
        finally:
            traffic.stop()


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_query_returns_data(
    fed_prometheus: tuple[Running, Prometheus], name: str
) -> None:
    _, prom = fed_prometheus
    empty = []
    for title, expr in panel_queries(BOARDS[name]):
        if not prom.query(substitute(expr)):
            empty.append(title)
    assert empty == []


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_variable_has_values(fed_prometheus: tuple[Running, Prometheus], name: str) -> None:
    _, prom = fed_prometheus
    for variable in BOARDS[name]["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
        assert match is not None
        selector, label = substitute(match.group(1)), match.group(2)
        result = prom.query(f"count by ({label}) ({selector})")
        assert [r["metric"].get(label) for r in result if r["metric"].get(label)], variable["name"]


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_preview_renders_from_live_data(
    fed_prometheus: tuple[Running, Prometheus], tmp_path: Path, name: str
) -> None:
    """Draws the README's pictures; UPDATE_PREVIEWS=1 (make previews) writes them to grafana/."""
    _, prom = fed_prometheus
    board = BOARDS[name]
    target = tmp_path
    if os.environ.get("UPDATE_PREVIEWS"):
        # A minute and a half of history makes a picture worth looking at.
        time.sleep(max(0.0, 90 - (time.monotonic() - STARTED)))
        target = ROOT / "grafana" / "previews"
    target.mkdir(parents=True, exist_ok=True)
    out = target / name.replace(".json", ".png")
    plotted = render_preview(board, lambda e: prom.query_range(substitute(e), 90), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plotted == len([p for p in board["panels"] if p["type"] != "row"])
