"""The dashboards: built with Grafana's SDK, every metric they and the rules use is
exposed, every recording rule is read by something, and every panel's queries
return data from a real Prometheus running the shipped rules and one running the
chart's rules tuned on windows and the watched quantile."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.monitoring.dashboards import DASHBOARDS, render
from tests.servers import running_exporter
from tests.stack import FAST, Drive, Prometheus, chart_rules, prometheus

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "helm/cloudmailin-exporter/files/rules.yaml"
BOARDS = {name: json.loads(render(make())) for name, make in DASHBOARDS.items()}
RULES = yaml.safe_load(SHIPPED.read_text())
RECORDED = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
# Series Prometheus makes itself, not the exporter.
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE", "vector"}
FUNCTIONS = {
    "by", "without", "on", "ignoring", "sum", "max", "min", "rate", "increase", "topk",
    "histogram_quantile", "count_over_time", "avg_over_time", "scalar", "absent", "bool",
}  # fmt: skip
# The chart's rules tuned as an operator might: short windows, another quantile.
TUNED = FAST.model_copy(update={"slow_delivery_quantile": 0.95})


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel of a dashboard JSON."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


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
    return names - FUNCTIONS


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_uids_titles_and_variables() -> None:
    uids = {board["uid"] for board in BOARDS.values()}
    assert uids == {"cloudmailin-delivery", "cloudmailin-exporter-health"}
    for board in BOARDS.values():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:3] == ["datasource", "job", "namespace"]
        for panel in panels(board):
            assert panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            if panel["type"] == "heatmap":
                # Bucket bounds are seconds, not plain numbers.
                assert panel["options"]["yAxis"]["unit"] == "s", panel["title"]
                assert panel["options"]["calculate"] is False
            elif panel["type"] != "table":
                assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
    delivery = BOARDS["cloudmailin-delivery.json"]
    (domain,) = [v for v in delivery["templating"]["list"] if v["name"] == "domain"]
    assert '$job"' in domain["query"]["query"]
    assert '$namespace"' in domain["query"]["query"]


def test_ratios_and_quantiles_are_never_averaged() -> None:
    for board in BOARDS.values():
        for title, expr in panel_queries(board):
            assert not re.search(r"\bavg\s*(by|\()", expr), (title, expr)
            recorded_ratio = re.search(r"(\w+:\w+:(ratio|histogram_quantile)\w*)", expr)
            if recorded_ratio:
                # A recorded ratio or quantile is shown per install, never aggregated.
                assert not re.search(r"\b(sum|max|min)\b", expr), (title, expr)


def test_panels_do_not_depend_on_tuned_values() -> None:
    """No panel selects a recorded quantile or names a tuned window or threshold."""
    for board in BOARDS.values():
        for title, expr in panel_queries(board):
            assert "quantile=" not in expr, (title, expr)
            windows = re.findall(r"\[([^\]]+)\]", expr)
            assert set(windows) <= {"$__rate_interval", "$__range"}, (title, expr)


def test_panels_the_domain_filter_cannot_narrow_say_so() -> None:
    """The delivery board filters by domain, but the rules record per install: a
    panel reading a recorded series shows every domain whatever is selected."""
    board = BOARDS["cloudmailin-delivery.json"]
    saying = [
        p["title"] for p in panels(board) if "Domain filter does not apply" in p["description"]
    ]
    reading = [
        p["title"]
        for p in panels(board)
        if any(metric_names(t["expr"]) & RECORDED for t in p.get("targets", []))
    ]
    assert "Bounces and suppressions" in reading
    assert saying == reading
    # And no panel filtering by domain claims not to.
    for panel in panels(board):
        if panel["title"] in saying:
            assert all("$domain" not in t["expr"] for t in panel.get("targets", []))


def test_webhook_status_panel_names_every_code_the_rejecting_alert_counts() -> None:
    panel = next(
        p
        for p in panels(BOARDS["cloudmailin-exporter-health.json"])
        if p["title"] == "Webhook requests by status"
    )
    rejecting = next(
        r["expr"]
        for g in RULES["groups"]
        for r in g["rules"]
        if r.get("alert") == "CloudMailinWebhookRejecting"
    )
    for code in ("4..", "5.."):
        assert code in rejecting
    for code in ("401", "413", "5xx"):
        assert code in panel["description"]


def test_time_to_delivery_panels_ask_for_exemplars() -> None:
    board = BOARDS["cloudmailin-delivery.json"]
    timed = [
        p
        for p in panels(board)
        if "time_to_delivery_seconds_bucket" in json.dumps(p) and p["type"] != "stat"
    ]
    assert {p["type"] for p in timed} >= {"heatmap", "timeseries"}
    for panel in timed:
        for target in panel["targets"]:
            if "_bucket" in target["expr"]:
                assert target.get("exemplar") is True, panel["title"]


def test_alert_dashboard_links_point_at_real_dashboards() -> None:
    uids = {board["uid"] for board in BOARDS.values()}
    for group in RULES["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["annotations"]["dashboard_url"].rsplit("/", 1)[1] in uids


def test_every_recording_rule_is_read_by_an_alert_or_a_panel() -> None:
    rules = [r for g in RULES["groups"] for r in g["rules"]]
    readers = [r["expr"] for r in rules if "alert" in r]
    readers += [expr for board in BOARDS.values() for _, expr in panel_queries(board)]
    used: set[str] = set()
    frontier = set().union(*(metric_names(e) for e in readers)) & RECORDED
    while frontier:
        used |= frontier
        feeding = [r["expr"] for r in rules if r.get("record") in frontier]
        frontier = set().union(set(), *(metric_names(e) for e in feeding)) & RECORDED - used
    assert used == RECORDED
    for record in RECORDED:
        # level:metric:operations
        assert re.fullmatch(r"[a-z_]+:cloudmailin_[a-z_]+:[a-z_]+", record), record


def test_every_metric_used_is_exposed_by_the_exporter() -> None:
    with running_exporter() as exporter:
        # One event of each kind so that every family has its samples.
        exporter.post([{"kind": "registration", "recipient": "a@x.example", "message_id": "m"}])
        text = exporter.client.get("/metrics").text
    exposed = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    used = set().union(*(metric_names(e) for e in all_expressions()))
    assert {
        "cloudmailin_time_to_delivery_seconds_bucket",
        "cloudmailin_state_store_up",
        "cloudmailin_pending_evicted_total",
        "cloudmailin_unmatched_events_total",
    } <= used
    for name in used:
        if name in BUILTIN:
            continue
        if ":" in name:
            assert name in RECORDED, name
        else:
            assert name in exposed, name


VARIANTS = {
    "shipped": {"job": "cloudmailin-exporter", "namespace": "e2e"},
    "tuned-chart": {"job": "cm-cloudmailin-exporter", "namespace": "mail"},
}


@pytest.fixture(scope="module")
def fed_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Prometheus]]:
    tmp = tmp_path_factory.mktemp("dashboards")
    with running_exporter(domain_min_events=1) as exporter:
        target = exporter.url.split("//")[1]
        with (
            prometheus(tmp, target, SHIPPED, **VARIANTS["shipped"]) as shipped,
            prometheus(tmp, target, chart_rules(tmp, TUNED), **VARIANTS["tuned-chart"]) as tuned,
        ):
            # Enough bounces that an alert is pending, so "Active alerts" has rows.
            traffic = Drive(exporter, 120, bounce_ratio=0.1, spam_ratio=0.05)
            try:
                proms = {"shipped": shipped, "tuned-chart": tuned}
                for name, prom in proms.items():
                    ready = [
                        "sum(rate(cloudmailin_time_to_delivery_seconds_count[10s])) > 0",
                        "namespace_job_quantile:cloudmailin_time_to_delivery_seconds"
                        ":histogram_quantile",
                        'ALERTS{alertname=~"CloudMailin.*"}',
                        'rate(cloudmailin_events_total{kind="click"}[10s]) > 0',
                    ]
                    for expr in ready:
                        assert prom.wait_for_data(expr, 60), (name, expr)
                yield proms
            finally:
                traffic.stop()


def substitute(expr: str, variant: str) -> str:
    values = {
        "$job": VARIANTS[variant]["job"],
        "$namespace": VARIANTS[variant]["namespace"],
        "$domain": "gmail.com",
        "$__rate_interval": "10s",
        "$__range": "1m",
    }
    for variable, value in values.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


@pytest.mark.e2e
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_query_returns_data(
    fed_prometheus: dict[str, Prometheus], name: str, variant: str
) -> None:
    prom = fed_prometheus[variant]
    empty = []
    for title, expr in panel_queries(BOARDS[name]):
        if not prom.query(substitute(expr, variant)):
            empty.append((title, expr))
    assert empty == []


@pytest.mark.e2e
def test_the_tuned_rules_watch_another_quantile(fed_prometheus: dict[str, Prometheus]) -> None:
    """The panels above returned data although the tuned rules record q0.95, not 0.9."""
    recorded = "namespace_job_quantile:cloudmailin_time_to_delivery_seconds:histogram_quantile"
    (tuned,) = fed_prometheus["tuned-chart"].query(recorded)
    assert tuned["metric"]["quantile"] == "0.95"
    assert tuned["metric"]["job"] == "cm-cloudmailin-exporter"
    (shipped,) = fed_prometheus["shipped"].query(recorded)
    assert shipped["metric"]["quantile"] == "0.9"


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_variable_has_values(fed_prometheus: dict[str, Prometheus], name: str) -> None:
    prom = fed_prometheus["shipped"]
    for variable in BOARDS[name]["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
        assert match is not None
        selector, label = substitute(match.group(1), "shipped"), match.group(2)
        result = prom.query(f"count by ({label}) ({selector})")
        assert [r["metric"].get(label) for r in result if r["metric"].get(label)], variable["name"]


@pytest.mark.e2e
def test_exemplars_reach_prometheus(fed_prometheus: dict[str, Prometheus]) -> None:
    """With exemplar storage on, the heatmap's query finds message ids."""
    prom = fed_prometheus["shipped"]
    (panel,) = [p for p in panels(BOARDS["cloudmailin-delivery.json"]) if p["type"] == "heatmap"]
    expr = substitute(panel["targets"][0]["expr"], "shipped")
    found = prom.exemplars(expr, 120)
    ids = {e["labels"].get("message_id") for s in found for e in s["exemplars"]}
    assert ids - {None}
