"""Grafana dashboards, built with Grafana's own SDK (grafana-foundation-sdk).

One function per panel. Every query selects the exporter's series through
the dashboard variables ($job, $namespace, $domain) and reads ratios and
quantiles from the recording rules, so dashboards and alerts show the same
numbers. Generated into grafana/dashboards/ and the chart's files/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter.monitoring.rules import DASHBOARD_DELIVERY, DASHBOARD_HEALTH

DATASOURCE: Final = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL: Final = 'job=~"$job", namespace=~"$namespace"'
DOMAIN_SEL: Final = SEL + ', domain=~"$domain"'
RATE: Final = "$__rate_interval"
TAGS: Final = ["cloudmailin", "email"]
DELIVERY_BUCKETS: Final = "cloudmailin_time_to_delivery_seconds_bucket"


def summed(metric: str, by: str = "", sel: str = SEL, fn: str = "rate", window: str = RATE) -> str:
    """sum [by (...)] (fn(metric{sel}[window]))"""
    group = f"sum by ({by}) " if by else "sum"
    return f"{group}({fn}({metric}{{{sel}}}[{window}]))"


def quantile(q: str, metric: str, by: str = "", sel: str = SEL) -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, {summed(metric + '_bucket', labels, sel)})"


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return q.legend_format(legend) if legend else q


def steps(*pairs: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=v, color=c) for v, c in pairs])
    )


BOUNCE_STEPS: Final = ((None, "green"), (0.02, "orange"), (0.05, "red"))


def series(title: str, description: str, unit: str, *targets: prometheus.Dataquery) -> Any:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def single(title: str, description: str, unit: str, target: prometheus.Dataquery) -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(4)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(target)
    )


# --- CloudMailin delivery ------------------------------------------------------


def events_per_second() -> Any:
    return single(
        "Events per second",
        "All CloudMailin events accepted per second.",
        "ops",
        query(summed("cloudmailin_events_total")),
    )


def delivery_ratio_stat() -> Any:
    return single(
        "Delivery ratio",
        "Deliveries among the messages that reached an outcome (recording rule "
        "cloudmailin:delivery_ratio, over the ratio window).",
        "percentunit",
        query(f"avg(cloudmailin:delivery_ratio{{{SEL}}})"),
    ).thresholds(steps((None, "red"), (0.9, "orange"), (0.97, "green")))


def bounce_ratio_stat() -> Any:
    return single(
        "Bounce ratio",
        "Bounces among the messages that reached an outcome. CloudMailin asks senders "
        "to stay under 2%.",
        "percentunit",
        query(f"avg(cloudmailin:bounce_ratio{{{SEL}}})"),
    ).thresholds(steps(*BOUNCE_STEPS))


def spam_ratio_stat() -> Any:
    return single(
        "Spam rejection ratio",
        "Messages suppressed or rejected as spam (spamd|suppressed) among outcomes.",
        "percentunit",
        query(f"avg(cloudmailin:spam_rejection_ratio{{{SEL}}})"),
    ).thresholds(steps((None, "green"), (0.01, "orange"), (0.05, "red")))


def pending_stat() -> Any:
    return single(
        "Pending messages",
        "Registered, no terminal event yet. max(): replicas of a shared store all report it.",
        "short",
        query(f"max(cloudmailin_pending_messages{{{SEL}}})"),
    )


def p90_stat() -> Any:
    return single(
        "Time to delivery p90",
        "90% of messages were delivered within this time after registration.",
        "s",
        query(f'max(cloudmailin:time_to_delivery_seconds:quantile{{{SEL}, quantile="0.9"}})'),
    ).thresholds(steps((None, "green"), (300, "orange"), (600, "red")))


def events_by_kind() -> Any:
    return series(
        "Events per second by kind",
        "Every event kind CloudMailin reports, per second.",
        "ops",
        query(summed("cloudmailin_events_total", "kind", DOMAIN_SEL), "{{kind}}"),
    )


def ratios() -> Any:
    panel = series(
        "Delivery, bounce and spam-rejection ratios",
        "From the recording rules the alerts use. The line is CloudMailin's 2% bounce guidance.",
        "percentunit",
        query(f"avg(cloudmailin:delivery_ratio{{{SEL}}})", "delivery", "A"),
        query(f"avg(cloudmailin:bounce_ratio{{{SEL}}})", "bounce", "B"),
        query(f"avg(cloudmailin:spam_rejection_ratio{{{SEL}}})", "spam rejection", "C"),
    )
    return (
        panel.thresholds(steps((None, "transparent"), (0.02, "red")))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphTresholdsStyleMode.LINE)
        )
        .min(0)
    )


def delivery_quantiles() -> Any:
    return series(
        "Time to delivery quantiles",
        "p50, p90 and p99 of registration to delivery (recording rules).",
        "s",
        query(
            f"max by (quantile) (cloudmailin:time_to_delivery_seconds:quantile{{{SEL}}})",
            "p{{quantile}}",
        ),
    )


def delivery_heatmap() -> Any:
    return (
        heatmap.Panel()
        .title("Time to delivery heatmap")
        .unit("short")
        .description(
            "How many messages were delivered after how long; exemplars lead to message ids."
        )
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .with_target(
            query(
                summed(DELIVERY_BUCKETS, "le", DOMAIN_SEL, "increase"),
                "{{le}}",
            ).format(PromQueryFormat.HEATMAP)
        )
    )


def p90_by_domain() -> Any:
    return series(
        "Time to delivery p90 by domain",
        "Slow domains stand out: greylisting, throttling or a full mailbox provider.",
        "s",
        query(
            quantile("0.9", "cloudmailin_time_to_delivery_seconds", "domain", DOMAIN_SEL),
            "{{domain}}",
        ),
    )


def top_domains_by_volume() -> Any:
    return (
        bargauge.Panel()
        .title("Top domains by volume")
        .description("Events per second over the dashboard's range, the ten busiest domains.")
        .datasource(DATASOURCE)
        .unit("ops")
        .height(8)
        .span(12)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .with_target(
            query(
                "topk(10, "
                + summed("cloudmailin_events_total", "domain", DOMAIN_SEL, window="$__range")
                + ")",
                "{{domain}}",
            ).instant()
        )
    )


def top_domains_by_bounce_ratio() -> Any:
    return (
        bargauge.Panel()
        .title("Top domains by bounce ratio")
        .description("The ten domains bouncing the largest share of their outcomes.")
        .datasource(DATASOURCE)
        .unit("percentunit")
        .height(8)
        .span(12)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .thresholds(steps(*BOUNCE_STEPS))
        .with_target(
            query(
                f"topk(10, max by (domain) (cloudmailin:bounce_ratio:domain{{{DOMAIN_SEL}}}))",
                "{{domain}}",
            ).instant()
        )
    )


def engagement() -> Any:
    return series(
        "Engagement",
        "Opens, reads and clicks per second.",
        "ops",
        query(
            summed("cloudmailin_events_total", "kind", DOMAIN_SEL + ', kind=~"open|read|click"'),
            "{{kind}}",
        ),
    )


def time_to_first_open() -> Any:
    return series(
        "Time from registration to first open and click (median)",
        "How long recipients take to engage.",
        "s",
        query(
            quantile(
                "0.5",
                "cloudmailin_time_since_registration_seconds",
                "kind",
                SEL + ', kind=~"open|click"',
            ),
            "{{kind}}",
        ),
    )


def pending_series() -> Any:
    return series(
        "Pending messages",
        "Messages registered but not yet delivered, bounced or given up on.",
        "short",
        query(f"max(cloudmailin_pending_messages{{{SEL}}})", "pending"),
    )


def active_alerts() -> Any:
    return (
        table.Panel()
        .title("Active alerts")
        .description("CloudMailin alerts pending or firing now (Prometheus' ALERTS series).")
        .datasource(DATASOURCE)
        .height(8)
        .span(24)
        .with_target(
            query('sum by (alertname, severity, alertstate) (ALERTS{alertname=~"CloudMailin.*"})')
            .instant()
            .format(PromQueryFormat.TABLE)
        )
    )


# --- Exporter health -------------------------------------------------------------


def requests_by_code() -> Any:
    return series(
        "Webhook requests by status",
        "401: CloudMailin's URL credentials do not match; 413: batches over the body limit.",
        "reqps",
        query(summed("cloudmailin_webhook_requests_total", "code"), "{{code}}"),
    )


def request_duration() -> Any:
    return series(
        "Webhook request duration",
        "Time to handle one POST, p50 and p99.",
        "s",
        query(
            quantile("0.5", "cloudmailin_webhook_request_duration_seconds"),
            "p50", "A",
        ),
        query(
            quantile("0.99", "cloudmailin_webhook_request_duration_seconds"),
            "p99", "B",
        ),
    )  # fmt: skip


def rejected_events() -> Any:
    return series(
        "Rejected events by reason",
        "Events in valid batches that failed validation.",
        "ops",
        query(
            summed("cloudmailin_rejected_events_total", "reason"),
            "{{reason}}",
        ),
    )


def duplicate_events() -> Any:
    return series(
        "Duplicate events by kind",
        "Re-deliveries recognised and not counted again (retried POSTs, second copies).",
        "ops",
        query(summed("cloudmailin_duplicate_events_total", "kind"), "{{kind}}"),
    )


def domain_overflow() -> Any:
    return series(
        "Domain overflow",
        'Events counted as domain="other" because MAX_DOMAINS was reached.',
        "ops",
        query(summed("cloudmailin_domain_overflow_events_total"), "overflow"),
    )


def state_errors() -> Any:
    return series(
        "State store errors",
        "Failed state store calls by operation; events are still counted meanwhile "
        "(timing pauses).",
        "ops",
        query(
            summed("cloudmailin_state_errors_total", "operation"),
            "{{operation}}",
        ),
    )


def unmatched_events() -> Any:
    return series(
        "Unmatched events by kind",
        "Events to be timed whose registration was never seen (sent before start-up, or expired).",
        "ops",
        query(summed("cloudmailin_unmatched_events_total", "kind"), "{{kind}}"),
    )


def evictions() -> Any:
    return series(
        "Pending evictions",
        "Pending messages dropped by age or by the entry cap before their terminal event.",
        "ops",
        query(
            summed("cloudmailin_pending_evicted_total", "reason"),
            "{{reason}}",
        ),
    )


def memory() -> Any:
    return series(
        "Resident memory",
        "Per pod.",
        "bytes",
        query(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}"),
    )


def cpu() -> Any:
    return series(
        "CPU",
        "Cores used per pod.",
        "short",
        query(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}"),
    )


def last_event_age() -> Any:
    return single(
        "Since the last event",
        "Seconds since CloudMailin's last accepted event.",
        "s",
        query(f"time() - max(cloudmailin_last_event_timestamp_seconds{{{SEL}}})"),
    )


def targets_up() -> Any:
    return single(
        "Exporters up",
        "Scrape targets answering.",
        "short",
        query(f"sum(up{{{SEL}}})"),
    )


def build_info() -> Any:
    return (
        table.Panel()
        .title("Versions")
        .description("Exporter version per pod.")
        .datasource(DATASOURCE)
        .height(4)
        .span(16)
        .with_target(
            query(f"cloudmailin_exporter_build_info{{{SEL}}}")
            .instant()
            .format(PromQueryFormat.TABLE)
        )
    )


# --- Dashboards -------------------------------------------------------------------


def variables(board: dash.Dashboard, with_domain: bool) -> dash.Dashboard:
    board = board.with_variable(
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    info = "cloudmailin_exporter_build_info"
    names = [
        ("job", "Job", f"label_values({info}, job)"),
        ("namespace", "Namespace", f'label_values({info}{{job=~"$job"}}, namespace)'),
    ]
    if with_domain:
        names.append(
            ("domain", "Domain", 'label_values(cloudmailin_events_total{job=~"$job"}, domain)')
        )
    for name, label, expr in names:
        board = board.with_variable(
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query({"query": expr, "refId": name})
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(models.VariableOption(selected=True, text="All", value="$__all"))
        )
    return board


def delivery_dashboard() -> dash.Dashboard:
    board = (
        dash.Dashboard("CloudMailin delivery")
        .uid(DASHBOARD_DELIVERY)
        .description("Outbound email through CloudMailin: volume, outcomes, time to delivery.")
        .tags(TAGS)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
    )
    board = variables(board, with_domain=True)
    board = board.with_row(dash.Row("Overview"))
    for panel in (events_per_second(), delivery_ratio_stat(), bounce_ratio_stat(),
                  spam_ratio_stat(), pending_stat(), p90_stat()):  # fmt: skip
        board = board.with_panel(panel)
    board = board.with_row(dash.Row("Traffic and outcomes"))
    board = board.with_panel(events_by_kind()).with_panel(ratios())
    board = board.with_row(dash.Row("Time to delivery"))
    board = board.with_panel(delivery_quantiles()).with_panel(delivery_heatmap())
    board = board.with_panel(p90_by_domain()).with_panel(pending_series())
    board = board.with_row(dash.Row("Domains"))
    board = board.with_panel(top_domains_by_volume()).with_panel(top_domains_by_bounce_ratio())
    board = board.with_row(dash.Row("Engagement"))
    board = board.with_panel(engagement()).with_panel(time_to_first_open())
    board = board.with_row(dash.Row("Alerts"))
    return board.with_panel(active_alerts())


def health_dashboard() -> dash.Dashboard:
    board = (
        dash.Dashboard("CloudMailin exporter health")
        .uid(DASHBOARD_HEALTH)
        .description("The exporter itself: webhook answers, validation, state store, resources.")
        .tags(TAGS)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
    )
    board = variables(board, with_domain=False)
    board = board.with_row(dash.Row("Webhook"))
    board = board.with_panel(last_event_age()).with_panel(targets_up()).with_panel(build_info())
    board = board.with_panel(requests_by_code()).with_panel(request_duration())
    board = board.with_panel(rejected_events()).with_panel(duplicate_events())
    board = board.with_row(dash.Row("State and labels"))
    board = board.with_panel(state_errors()).with_panel(unmatched_events())
    board = board.with_panel(evictions()).with_panel(domain_overflow())
    board = board.with_row(dash.Row("Resources"))
    return board.with_panel(memory()).with_panel(cpu())


DASHBOARDS: Final = {
    "cloudmailin-delivery.json": delivery_dashboard,
    "cloudmailin-exporter-health.json": health_dashboard,
}


def render(builder: Builder[Any]) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(builder.build()) + "\n"


def outputs(grafana_dir: Path, chart_dir: Path) -> dict[Path, str]:
    files = {}
    for name, make in DASHBOARDS.items():
        text = render(make())
        files[grafana_dir / name] = text
        files[chart_dir / name] = text
    return files


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel of a dashboard JSON."""
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out
