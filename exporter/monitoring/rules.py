"""Prometheus recording and alert rules, generated from MonitoringConfig.

The same builders serve two outputs: the plain rules file (real values) and
the chart's PrometheusRule template (each knob a Helm value), so the chart
rendered with its defaults is exactly the committed rules file, except that
the chart selects its own release's series (its Service's job and namespace).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from exporter.events import TERMINAL
from exporter.monitoring.config import MonitoringConfig

DASHBOARD_DELIVERY: Final = "cloudmailin-delivery"
DASHBOARD_HEALTH: Final = "cloudmailin-exporter-health"

# Kinds behind each ratio. "Sent" is every message that reached an outcome:
# CloudMailin's outbound overview holds bounces and suppressions against it.
SENT: Final = "|".join(sorted(TERMINAL))
HARD_BOUNCES: Final = "bounce|dispatch_bounce"
SUPPRESSIONS: Final = "blocked|spamd|suppressed"
BOUNCES_AND_SUPPRESSIONS: Final = f"{HARD_BOUNCES}|{SUPPRESSIONS}"
SPAM: Final = "spamd|suppressed"
OPENS: Final = "open"
WEBHOOK_ERRORS: Final = 'code=~"4..|5.."'
DELIVERIES: Final = "cloudmailin_time_to_delivery_seconds_count"

# Recording rules, named level:metric:operations. The level is the default
# aggregation; operations name the function, not its window, because every
# window is a knob and a tuned window must not rename a series a panel reads.
EVENTS_RATE: Final = "namespace_job_kind:cloudmailin_events:rate"
EVENTS_INCREASE: Final = "namespace_job_kind:cloudmailin_events:increase"
OVERVIEW_RATIO: Final = "namespace_job:cloudmailin_bounces_and_suppressions_per_sent:ratio"
HARD_BOUNCE_RATIO: Final = "namespace_job:cloudmailin_hard_bounces_per_sent:ratio"
HISTORY: Final = "namespace_job:cloudmailin_baseline_history:ratio"
HARD_BOUNCE_BASELINE: Final = "namespace_job:cloudmailin_hard_bounces_per_sent:ratio_baseline"
SPAM_BASELINE: Final = "namespace_job:cloudmailin_spam_rejections_per_sent:ratio_baseline"
OPENS_BASELINE: Final = "namespace_job:cloudmailin_opens_per_delivery:ratio_baseline"
DELIVERY_QUANTILE: Final = (
    "namespace_job_quantile:cloudmailin_time_to_delivery_seconds:histogram_quantile"
)


def num(value: object) -> str:
    """A threshold as PromQL text, printed as Helm prints the same YAML number."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def percent(value: object) -> str:
    """A ratio threshold as alert text; Prometheus formats it when the alert fires."""
    return f"{{{{ {num(value)} | humanizePercentage }}}}"


def baseline_text(record: str) -> str:
    """Alert text: the value of a baseline recording for the alert's own install."""
    return (
        f'{{{{ with printf "{record}{{namespace=%q, job=%q}}" $labels.namespace $labels.job'
        " | query }}{{ . | first | value | humanizePercentage }}{{ end }}"
    )


class Builder:
    def __init__(self, c: Any) -> None:
        # `c` is a MonitoringConfig, or Placeholders standing in for one.
        self.c = c
        self.by = c.aggregation
        self.sel = c.selector

    def m(self, metric: str, extra: str = "") -> str:
        matchers = ", ".join(x for x in (self.sel, extra) if x)
        return f"{metric}{{{matchers}}}"

    def summed(self, fn: str, metric: str, window: str, extra: str = "", by: str = "") -> str:
        """sum by (aggregation[, by]) (fn(metric{selector, extra}[window]))"""
        labels = ", ".join(x for x in (self.by, by) if x)
        return f"sum by ({labels}) ({fn}({self.m(metric, extra)}[{window}]))"

    def events(self, fn: str, window: str, kinds: str = "") -> str:
        extra = f'kind=~"{kinds}"' if kinds else ""
        return self.summed(fn, "cloudmailin_events_total", window, extra)

    def recorded(self, record: str, kinds: str, fn: str = "", window: str = "") -> str:
        """The per-kind recording summed over `kinds`, optionally through fn over window."""
        series = self.m(record, f'kind=~"{kinds}"')
        inner = f"{fn}({series}[{window}])" if fn else series
        return f"sum by ({self.by}) ({inner})"

    def baseline(self, kinds: str, before: str) -> str:
        """Per-second rate of `kinds` over the baseline window that ends `before` ago.

        An average of the recorded 5-minute rates rather than one rate() over the
        window: time in which nothing was scraped does not dilute it. Ending where
        the recent window starts keeps a spike out of its own baseline."""
        series = self.m(EVENTS_RATE, f'kind=~"{kinds}"')
        window = f"{self.c.baseline_window}] offset {before}"
        return f"sum by ({self.by}) (avg_over_time({series}[{window}))"

    def baseline_ratio(self, numerator: str, denominator: str, before: str) -> str:
        return f"{self.baseline(numerator, before)}\n/ ({self.baseline(denominator, before)} > 0)"

    def on(self) -> str:
        return f"on ({self.by})"

    def warmed_up(self) -> str:
        """The install has been scraped through (most of) its baseline window."""
        return f"and {self.on()} {self.m(HISTORY)} >= {num(self.c.baseline_min_history)}"

    def recording(self) -> list[dict[str, Any]]:
        c = self.c
        sent = self.recorded(EVENTS_INCREASE, SENT)
        history = (
            f"max by ({self.by}) (count_over_time({self.m(EVENTS_RATE)}[{c.baseline_window}]))\n"
            # Every step of the window, whether anything was scraped or not. The
            # subquery steps at the global evaluation interval and the numerator
            # counts this group's own samples, so the ratio is right only while
            # the recording group is evaluated at the global interval (no group
            # `interval`); faster would read over 1, slower would never warm up.
            f"/ scalar(count_over_time(vector(1)[{c.baseline_window}:]))"
        )
        buckets = self.summed(
            "rate", "cloudmailin_time_to_delivery_seconds_bucket", c.slow_delivery_window, by="le"
        )
        quantile = num(c.slow_delivery_quantile)
        return [
            {
                "record": EVENTS_RATE,
                "expr": self.summed("rate", "cloudmailin_events_total", c.rate_window, by="kind"),
            },
            {
                "record": EVENTS_INCREASE,
                "expr": self.summed(
                    "increase", "cloudmailin_events_total", c.ratio_window, by="kind"
                ),
            },
            {
                "record": OVERVIEW_RATIO,
                "expr": f"{self.recorded(EVENTS_INCREASE, BOUNCES_AND_SUPPRESSIONS)}\n"
                f"/ ({sent} > 0)",
            },
            {
                "record": HARD_BOUNCE_RATIO,
                "expr": f"{self.recorded(EVENTS_INCREASE, HARD_BOUNCES)}\n/ ({sent} > 0)",
            },
            {"record": HISTORY, "expr": history},
            {
                "record": HARD_BOUNCE_BASELINE,
                "expr": self.baseline_ratio(HARD_BOUNCES, SENT, c.spike_window),
            },
            {"record": SPAM_BASELINE, "expr": self.baseline_ratio(SPAM, SENT, c.spike_window)},
            {
                "record": OPENS_BASELINE,
                "expr": self.baseline_ratio(OPENS, "delivery", c.engagement_window),
            },
            {
                "record": DELIVERY_QUANTILE,
                "expr": f"histogram_quantile({quantile}, {buckets})",
                "labels": {"quantile": quantile},
            },
        ]

    def alert(
        self,
        name: str,
        expr: str,
        duration: str,
        severity: str,
        summary: str,
        description: str,
        dashboard: str = DASHBOARD_DELIVERY,
    ) -> dict[str, Any]:
        c = self.c
        return {
            "alert": name,
            "expr": expr,
            "for": duration,
            "labels": {"severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"{c.runbook_url}#{name.lower()}",
                "dashboard_url": f"{c.grafana_url}/d/{dashboard}",
            },
        }

    def ratio_alert(self, name: str, threshold: Any, severity: str, consequence: str) -> Any:
        c = self.c
        where = "{{ $labels.namespace }}/{{ $labels.job }}"
        sent = self.recorded(EVENTS_INCREASE, SENT)
        return self.alert(
            name,
            f"{self.m(OVERVIEW_RATIO)} > {num(threshold)}\n"
            f"and {self.on()} {sent} >= {num(c.min_outcomes)}",
            c.bounce_ratio_for,
            severity,
            f"Bounces and suppressions above {percent(threshold)} of sent mail ({where})",
            f"{{{{ $value | humanizePercentage }}}} of the mail sent over the last "
            f"{c.ratio_window} bounced or was suppressed, above {percent(threshold)}. This is "
            "CloudMailin's outbound-overview ratio (hard bounces and suppressions against sent "
            "volume), the figure its 2% guidance is read against; the hard-bounce ratio of its "
            f"health page is on the dashboard. {consequence}",
        )

    def spike_alert(
        self,
        name: str,
        kinds: str,
        baseline: str,
        knobs: tuple[Any, Any, Any],
        words: tuple[str, str, str],
    ) -> dict[str, Any]:
        """The share of sent mail in `kinds` over the spike window, against `factor`
        times its baseline share, with volume and warm-up guards. A share rather than
        a rate: a campaign that triples the volume triples the bounces too."""
        c = self.c
        factor, min_events, duration = knobs
        summary, what, unit = words
        recent = self.events("increase", c.spike_window, kinds)
        return self.alert(
            name,
            f"{recent}\n/ {self.events('increase', c.spike_window, SENT)}\n"
            f"> {self.on()} {num(factor)} * {self.m(baseline)}\n"
            f"and {self.on()} {recent} >= {num(min_events)}\n{self.warmed_up()}",
            duration,
            "warning",
            f"{summary} ({{{{ $labels.namespace }}}}/{{{{ $labels.job }}}})",
            f"{{{{ $value | humanizePercentage }}}} of the mail sent over the last "
            f"{c.spike_window} {what}: more than {num(factor)} times the share over the "
            f"{c.baseline_window} before, {baseline_text(baseline)}, with at least "
            f"{num(min_events)} {unit}.",
        )

    def alerts(self) -> list[dict[str, Any]]:
        c = self.c
        on = self.on()
        where = "{{ $labels.namespace }}/{{ $labels.job }}"
        requests = "cloudmailin_webhook_requests_total"
        deliveries = self.events("increase", c.engagement_window, "delivery")
        opens = self.events("increase", c.engagement_window, OPENS)
        delivery_rate = self.events("rate", c.engagement_window, "delivery")
        # Steady: the window before the recent one, not the day's average, which a
        # sender's busy hours exceed every day.
        delivery_series = self.m("cloudmailin_events_total", 'kind=~"delivery"')
        delivery_before = (
            f"sum by ({self.by}) (rate({delivery_series}"
            f"[{c.engagement_window}] offset {c.engagement_window}))"
        )
        unmatched = self.summed(
            "increase", "cloudmailin_unmatched_events_total", c.unmatched_window, 'kind="delivery"'
        )
        all_deliveries = self.events("increase", c.unmatched_window, "delivery")
        watched = self.m(DELIVERY_QUANTILE, f'quantile="{num(c.slow_delivery_quantile)}"')
        evicted = self.summed(
            "increase", "cloudmailin_pending_evicted_total", c.evicted_window, 'reason="capacity"'
        )
        overflow = self.summed(
            "increase", "cloudmailin_domain_overflow_events_total", c.overflow_window
        )
        return [
            self.ratio_alert(
                "CloudMailinBounceRatioHigh",
                c.bounce_ratio_warning,
                "warning",
                "Find the list or campaign that causes it (dashboard: domains by bounce ratio).",
            ),
            self.ratio_alert(
                "CloudMailinBounceRatioCritical",
                c.bounce_ratio_critical,
                "critical",
                "The sending account is at risk of suspension: stop the campaign that causes it.",
            ),
            self.spike_alert(
                "CloudMailinBounceSpike",
                HARD_BOUNCES,
                HARD_BOUNCE_BASELINE,
                (c.bounce_spike_factor, c.bounce_spike_min_events, c.bounce_spike_for),
                ("Hard bounces spiking", "hard-bounced", "hard bounces"),
            ),
            self.spike_alert(
                "CloudMailinSpamRejectionSpike",
                SPAM,
                SPAM_BASELINE,
                (c.spam_spike_factor, c.spam_spike_min_events, c.spam_spike_for),
                (
                    "Spam rejections spiking",
                    "was suppressed or rejected as spam",
                    "rejections",
                ),
            ),
            self.alert(
                "CloudMailinOpenRateDrop",
                f"{opens}\n/ {deliveries}\n"
                f"< {on} {num(c.engagement_drop_ratio)} * {self.m(OPENS_BASELINE)}\n"
                f"and {on} {self.m(OPENS_BASELINE)} * {on} {deliveries}"
                f" >= {num(c.engagement_min_expected_opens)}\n"
                f"and {on} {delivery_rate} <= {on} {num(c.engagement_delivery_surge)}"
                f" * {delivery_before}\n{self.warmed_up()}",
                c.engagement_for,
                "warning",
                f"Opens collapsed while deliveries hold ({where})",
                f"Opens per delivery over the last {c.engagement_window} fell to "
                f"{{{{ $value | humanizePercentage }}}}, under {num(c.engagement_drop_ratio)} of "
                f"the {c.baseline_window} before, {baseline_text(OPENS_BASELINE)}, while "
                "deliveries held steady. CloudMailin's health page calls this the first sign "
                "of mail going to junk.",
            ),
            self.alert(
                "CloudMailinRetriesExhausted",
                f"{self.events('increase', c.retries_exhausted_window, 'retries_exhausted')} >= "
                f"{num(c.retries_exhausted_threshold)}",
                c.retries_exhausted_for,
                "warning",
                f"Messages running out of delivery retries ({where})",
                f"{{{{ $value | humanize }}}} messages gave up after all retries in the last "
                f"{c.retries_exhausted_window} (the alert starts at "
                f"{num(c.retries_exhausted_threshold)}): a receiving domain keeps deferring us.",
            ),
            self.alert(
                "CloudMailinSlowDelivery",
                f"{watched} > {num(c.slow_delivery_seconds)}\n"
                f"and {on} {self.summed('increase', DELIVERIES, c.slow_delivery_window)}"
                f" >= {num(c.slow_delivery_min_deliveries)}",
                c.slow_delivery_for,
                "warning",
                f"Email delivery is slow ({where})",
                f"The {num(c.slow_delivery_quantile)} quantile of time from registration to "
                f"delivery over the last {c.slow_delivery_window} is "
                f"{{{{ $value | humanizeDuration }}}}, above "
                f"{{{{ {num(c.slow_delivery_seconds)} | humanizeDuration }}}}.",
            ),
            self.alert(
                "CloudMailinWebhookSilent",
                f"sum by ({self.by}) (increase({self.m('cloudmailin_events_total')}"
                f"[{c.silent_window}] offset {c.baseline_window}))"
                f" >= {num(c.silent_baseline_events)}\n"
                f"and {on} {self.events('increase', c.silent_window)} == 0\n"
                f"{self.warmed_up()}",
                c.silent_for,
                "warning",
                f"No CloudMailin events received ({where})",
                f"Not one event arrived in the last {c.silent_window}, against "
                f"{{{{ $value | humanize }}}} in the same {c.silent_window} "
                f"{c.baseline_window} earlier. Check the webhook URL in CloudMailin and the "
                "Ingress.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinWebhookRejecting",
                f"{self.summed('increase', requests, c.rejecting_window, WEBHOOK_ERRORS)}\n/ "
                f"{self.summed('increase', requests, c.rejecting_window)}\n"
                f"> {num(c.rejecting_ratio)}\n"
                f"and {on} {self.summed('increase', requests, c.rejecting_window)} >= "
                f"{num(c.rejecting_min_requests)}",
                c.rejecting_for,
                "critical",
                f"The webhook is rejecting CloudMailin's requests ({where})",
                f"{{{{ $value | humanizePercentage }}}} of webhook requests in the last "
                f"{c.rejecting_window} were answered 4xx or 5xx, above "
                f"{percent(c.rejecting_ratio)}. 401 means the credentials in CloudMailin's URL "
                "do not match the exporter's; 500 an error inside the exporter (its log has "
                "the traceback). Events are being lost.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinPendingEvicted",
                f"{evicted} > 0",
                c.evicted_for,
                "warning",
                f"Pending messages evicted for capacity ({where})",
                f"{{{{ $value | humanize }}}} registrations were dropped in the last "
                f"{c.evicted_window} because the pending state was full: those messages' time "
                "to delivery is lost. Raise PENDING_MAX_ENTRIES (and the store's memory).",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinUnmatchedDeliveries",
                f"{unmatched}\n/ {all_deliveries}\n> {num(c.unmatched_ratio)}\n"
                f"and {on} {all_deliveries} >= {num(c.unmatched_min_deliveries)}",
                c.unmatched_for,
                "warning",
                f"Deliveries arriving without their registration ({where})",
                f"{{{{ $value | humanizePercentage }}}} of the deliveries in the last "
                f"{c.unmatched_window} had no registration on record, above "
                f"{percent(c.unmatched_ratio)}: registrations are being lost (not sent by "
                "CloudMailin, expired, evicted, or kept by another replica's own store), and "
                "those deliveries are not timed.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinDomainOverflow",
                f"{overflow} > 0",
                c.overflow_for,
                "info",
                f"Recipient domains folded into other ({where})",
                f"{{{{ $value | humanize }}}} events in the last {c.overflow_window} were counted "
                'as domain="other" because the domain label budget is full. Raise MAX_DOMAINS '
                "or allow-list the domains you care about.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinStateStoreDown",
                f"{self.m('cloudmailin_state_store_up')} == 0",
                c.state_store_down_for,
                "warning",
                "State store unreachable ({{ $labels.namespace }}/{{ $labels.instance }})",
                "{{ $labels.instance }} cannot reach its state store: events are still "
                "counted and webhooks answered, but deliveries are not timed and duplicates "
                "not recognised until it answers again.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinExporterDown",
                f"{self.m('up')} == 0",
                c.down_for,
                "critical",
                "cloudmailin-exporter cannot be scraped ({{ $labels.instance }})",
                "Prometheus cannot scrape {{ $labels.instance }}: CloudMailin's webhooks to it "
                "fail and email is unmonitored.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinExporterAbsent",
                f"absent({self.m('up')})",
                c.absent_for,
                "critical",
                "cloudmailin-exporter is not scraped at all",
                "No target matches the exporter's selector: it is not deployed, or "
                "Prometheus does not discover it (ServiceMonitor labels?).",
                DASHBOARD_HEALTH,
            ),
        ]


def rule_groups(c: Any) -> dict[str, Any]:
    builder = Builder(c)
    return {
        "groups": [
            {"name": "cloudmailin-exporter.rules", "rules": builder.recording()},
            {"name": "cloudmailin-exporter.alerts", "rules": builder.alerts()},
        ]
    }


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def render_rules(config: MonitoringConfig) -> str:
    header = "# Generated by `cloudmailin-exporter rules` from exporter/monitoring/config.py.\n"
    return header + dump(rule_groups(config))


class Placeholders:
    """Stands in for MonitoringConfig: each knob becomes a marker for a Helm value."""

    def __getattr__(self, name: str) -> str:
        return f"@@{name}@@"


HELM_VALUES_PATH: Final = ".Values.prometheusRule.config"


class _BlockDumper(_Dumper):
    pass


def _block_if_marked(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A literal block takes any text a Helm value may put in it; a plain or
    # quoted scalar would break on a quote or ": " inside a selector.
    style = "|" if "\n" in value or "@@" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _block_if_marked)


# Helm variables the PrometheusRule template defines before the groups.
HELM_SELECTOR: Final = "$selector"
HELM_DISABLED: Final = "$disabled"
# Labels added to every alert, for Alertmanager routing (team, cluster...).
HELM_RULE_LABELS: Final = (
    "{{- with .Values.prometheusRule.additionalRuleLabels }}{{ toYaml . | nindent %d }}{{- end }}"
)


def _helm_text(rule: dict[str, Any]) -> str:
    """One rule as a YAML list item of Helm template text, every knob read from the values."""
    from exporter.monitoring.config import camel  # noqa: PLC0415 - only the generator needs it

    text = yaml.dump([rule], Dumper=_BlockDumper, sort_keys=False, width=1000)
    # Prometheus' own {{ $labels.x }} must reach the output as written.
    text = text.replace("{{", "\x00").replace("}}", "\x01")
    text = text.replace("\x00", '{{ "{{" }}').replace("\x01", '{{ "}}" }}')
    text = text.replace("@@selector@@", f"{{{{ {HELM_SELECTOR} }}}}")
    for name in MonitoringConfig.model_fields:
        text = text.replace(f"@@{name}@@", f"{{{{ {HELM_VALUES_PATH}.{camel(name)} }}}}")
    if "@@" in text:
        raise ValueError("a rule uses a knob that is not a MonitoringConfig field")
    # A PromQL brace next to a value would read as a Go template delimiter.
    return text.replace("{{{ ", '{{ "{" }}{{ ').replace("}}}", '}}{{ "}" }}')


def helm_groups_template(indent: int) -> str:
    """The rule groups as Helm template text.

    Every knob is read from the values, the selector from `$selector` and each
    alert is left out when `$disabled` names it; both variables are defined by
    the template around this text.
    """
    lines = ["groups:\n"]
    for group in rule_groups(Placeholders())["groups"]:
        lines.append(f"- name: {group['name']}\n  rules:\n")
        for rule in group["rules"]:
            text = "".join("  " + line for line in _helm_text(rule).splitlines(True))
            if "alert" in rule:
                severity = f"      severity: {rule['labels']['severity']}"
                labels = HELM_RULE_LABELS % (6 + indent)
                text = text.replace(severity + "\n", severity + labels + "\n", 1)
                condition = f'{{{{- if not (index {HELM_DISABLED} "{rule["alert"]}") }}}}\n'
                text = condition + text + "{{- end }}\n"
            lines.append(text)
    pad = " " * indent
    text = "".join(lines)
    return "".join(
        pad + line if line.strip() and not line.startswith("{{-") else line
        for line in text.splitlines(True)
    )
