"""Grafana dashboards, built with Grafana's own SDK (grafana-foundation-sdk).

One function per panel. Every query selects the exporter's series through
the dashboard variables ($job, $namespace, $domain). Ratios sum numerators and
denominators over every selected install before dividing, and quantiles come
from summed buckets, so any selection is read correctly; the recorded series
the alerts use are shown per install, never averaged. No panel depends on a
tuned threshold, window or quantile: the recording rules' names do not carry
them, so a tuned config never blanks a panel. Generated into grafana/dashboards/
and the chart's files/.
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

from exporter.monitoring.rules import (
    BOUNCES_AND_SUPPRESSIONS,
    DASHBOARD_DELIVERY,
    DASHBOARD_HEALTH,
    DELIVERY_QUANTILE,
    EVENTS_INCREASE,
    HARD_BOUNCE_RATIO,
    HARD_BOUNCES,
    OPENS,
    OVERVIEW_RATIO,
    SENT,
    SPAM,
)

DATASOURCE: Final = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL: Final = 'job=~"$job", namespace=~"$namespace"'
DOMAIN_SEL: Final = SEL + ', domain=~"$domain"'
RATE: Final = "$__rate_interval"
TAGS: Final = ["cloudmailin", "email"]
DELIVERY_BUCKETS: Final = "cloudmailin_time_to_delivery_seconds_bucket"
# Said on every panel that reads the rules' recorded series: those are summed per
# install, so the Domain variable other panels obey cannot narrow them. Grafana
# interpolates descriptions, hence the variable's label rather than "$domain".
ALL_DOMAINS: Final = (
    " All domains: the rules record per install, so the Domain filter does not apply."
)


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


def share(kinds: str, of: str = SENT) -> str:
    """Events of `kinds` per event of `of` over the ratio window, summed over every
    selected install before dividing (the recorded per-kind increases)."""
    top = f'sum({EVENTS_INCREASE}{{{SEL}, kind=~"{kinds}"}})'
    bottom = f'sum({EVENTS_INCREASE}{{{SEL}, kind=~"{of}"}})'
    return f"{top}\n/ ({bottom} > 0)"


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
        "Deliveries per message sent (every message that reached an outcome), over the "
        "rules' ratio window." + ALL_DOMAINS,
        "percentunit",
        query(share("delivery")),
    ).thresholds(steps((None, "red"), (0.9, "orange"), (0.97, "green")))


def bounce_ratio_stat() -> Any:
    return single(
        "Bounces and suppressions",
        "Hard bounces and suppressions per message sent: CloudMailin's outbound-overview "
        "ratio, the one the bounce ratio alerts use. CloudMailin asks senders to stay under 2%."
        + ALL_DOMAINS,
        "percentunit",
        query(share(BOUNCES_AND_SUPPRESSIONS)),
    ).thresholds(steps(*BOUNCE_STEPS))


def hard_bounce_ratio_stat() -> Any:
    return single(
        "Hard bounces",
        "Hard bounces per message sent: the ratio of CloudMailin's health page." + ALL_DOMAINS,
        "percentunit",
        query(share(HARD_BOUNCES)),
    ).thresholds(steps(*BOUNCE_STEPS))


def spam_ratio_stat() -> Any:
    return single(
        "Spam rejections",
        "Messages suppressed or rejected as spam (spamd|suppressed) per message sent."
        + ALL_DOMAINS,
        "percentunit",
        query(share(SPAM)),
    ).thresholds(steps((None, "green"), (0.01, "orange"), (0.05, "red")))


def opens_stat() -> Any:
    return single(
        "Opens per delivery",
        "Opens per delivered message over the ratio window; zero without open tracking."
        + ALL_DOMAINS,
        "percentunit",
        query(share(OPENS, "delivery")),
    )


def pending_stat() -> Any:
    return single(
        "Pending messages",
        "Registered, no terminal event yet. Replicas of a shared store all report the same "
        "number: the largest per install, summed over installs.",
        "short",
        query(f"sum(max by (namespace, job) (cloudmailin_pending_messages{{{SEL}}}))"),
    )


def p90_stat() -> Any:
    return single(
        "Time to delivery p90",
        "90% of messages were delivered within this time after registration (buckets of "
        "every selected install, summed).",
        "s",
        query(quantile("0.9", "cloudmailin_time_to_delivery_seconds")),
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
        "Per message sent, over the rules' ratio window, summed over the selected installs. "
        "The line is CloudMailin's 2% bounce guidance." + ALL_DOMAINS,
        "percentunit",
        query(share("delivery"), "delivery", "A"),
        query(share(BOUNCES_AND_SUPPRESSIONS), "bounces and suppressions", "B"),
        query(share(HARD_BOUNCES), "hard bounces", "C"),
        query(share(SPAM), "spam rejections", "D"),
    )
    return (
        panel.thresholds(steps((None, "transparent"), (0.02, "red")))
        .thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphTresholdsStyleMode.LINE)
        )
        .min(0)
    )


def ratios_per_install() -> Any:
    panel = series(
        "Bounce ratios per install, as the alerts see them",
        "The recorded ratios: bounces and suppressions per message sent (CloudMailin's "
        "outbound overview, which the bounce ratio alerts use) and hard bounces per message "
        "sent (its health page). One line per install." + ALL_DOMAINS,
        "percentunit",
        query(f"{OVERVIEW_RATIO}{{{SEL}}}", "{{namespace}}/{{job}} bounces and suppressions", "A"),
        query(f"{HARD_BOUNCE_RATIO}{{{SEL}}}", "{{namespace}}/{{job}} hard bounces", "B"),
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
        "p50, p90 and p99 of registration to delivery from the summed buckets, and the "
        "quantile the slow-delivery alert watches, per install. Exemplars (the dots) lead "
        "to message ids when Prometheus stores them (--enable-feature=exemplar-storage)."
        + ALL_DOMAINS,
        "s",
        *(
            query(quantile(q, "cloudmailin_time_to_delivery_seconds"), f"p{q[2:]}", ref).exemplar(
                True
            )
            for q, ref in (("0.5", "A"), ("0.9", "B"), ("0.99", "C"))
        ),
        query(
            f"{DELIVERY_QUANTILE}{{{SEL}}}",
            "{{namespace}}/{{job}} alerting on q{{quantile}}",
            "D",
        ),
    )


def delivery_heatmap() -> Any:
    return (
        heatmap.Panel()
        .title("Time to delivery heatmap")
        .description(
            "How many messages were delivered after how long. Exemplars lead to message ids "
            "when Prometheus stores them (--enable-feature=exemplar-storage)."
        )
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_values(heatmap.CellValues().unit("short"))
        .with_target(
            query(summed(DELIVERY_BUCKETS, "le", DOMAIN_SEL, "increase"), "{{le}}")
            .format(PromQueryFormat.HEATMAP)
            .exemplar(True)
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
        ).exemplar(True),
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
    def by_domain(kinds: str) -> str:
        return summed(
            "cloudmailin_events_total",
            "domain",
            f'{DOMAIN_SEL}, kind=~"{kinds}"',
            "increase",
            "$__range",
        )

    # 10 messages: below that one bounce puts a domain at the top of the list.
    return (
        bargauge.Panel()
        .title("Top domains by hard-bounce ratio")
        .description(
            "The ten domains hard-bouncing the largest share of the mail sent to them over "
            "the dashboard's range, among domains sent at least 10 messages."
        )
        .datasource(DATASOURCE)
        .unit("percentunit")
        .height(8)
        .span(12)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .thresholds(steps(*BOUNCE_STEPS))
        .with_target(
            query(
                f"topk(10, {by_domain(HARD_BOUNCES)}\n/ ({by_domain(SENT)} >= 10))",
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


def opens_per_delivery() -> Any:
    return series(
        "Opens per delivery",
        "Opens per delivered message over the rules' ratio window. A sudden fall while "
        "deliveries hold is the first sign of mail going to junk (CloudMailin's health page)."
        + ALL_DOMAINS,
        "percentunit",
        query(share(OPENS, "delivery"), "opens per delivery"),
    ).min(0)


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
        query(
            f"max by (namespace, job) (cloudmailin_pending_messages{{{SEL}}})",
            "{{namespace}}/{{job}}",
        ),
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
        "401: CloudMailin's URL credentials do not match; 413: batches over the body limit; "
        "5xx: errors inside the exporter. The webhook-rejecting alert counts all of them.",
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
        "Failed state store calls by operation; events are still counted meanwhile"
        " (timing pauses).",
        "ops",
        query(
            summed("cloudmailin_state_errors_total", "operation"),
            "{{operation}}",
        ),
    )


def state_store_up() -> Any:
    return (
        series(
            "State store up",
            "1 while a pod's state store answers, 0 while it does not (the pod stays ready and "
            "keeps counting).",
            "short",
            query(f"cloudmailin_state_store_up{{{SEL}}}", "{{instance}}"),
        )
        .min(0)
        .max(1)
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
            ("domain", "Domain", f"label_values(cloudmailin_events_total{{{SEL}}}, domain)")
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
                  hard_bounce_ratio_stat(), spam_ratio_stat(), opens_stat(), pending_stat(),
                  p90_stat()):  # fmt: skip
        board = board.with_panel(panel.span(3))
    board = board.with_row(dash.Row("Traffic and outcomes"))
    board = board.with_panel(events_by_kind()).with_panel(ratios())
    board = board.with_panel(ratios_per_install())
    board = board.with_row(dash.Row("Time to delivery"))
    board = board.with_panel(delivery_quantiles()).with_panel(delivery_heatmap())
    board = board.with_panel(p90_by_domain()).with_panel(pending_series())
    board = board.with_row(dash.Row("Domains"))
    board = board.with_panel(top_domains_by_volume()).with_panel(top_domains_by_bounce_ratio())
    board = board.with_row(dash.Row("Engagement"))
    board = board.with_panel(engagement()).with_panel(opens_per_delivery())
    board = board.with_panel(time_to_first_open())
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
    board = board.with_panel(state_store_up()).with_panel(state_errors())
    board = board.with_panel(unmatched_events())
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
