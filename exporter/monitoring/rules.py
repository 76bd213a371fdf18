"""Prometheus recording and alert rules, generated from MonitoringConfig.

The same builders serve two outputs: the plain rules file (real values) and
the chart's PrometheusRule template (each knob a Helm value), so the chart
rendered with its defaults is exactly the committed rules file.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from exporter.events import TERMINAL
from exporter.monitoring.config import MonitoringConfig

DASHBOARD_DELIVERY: Final = "cloudmailin-delivery"
DASHBOARD_HEALTH: Final = "cloudmailin-exporter-health"
BOUNCES: Final = "bounce|dispatch_bounce"
SPAM: Final = "spamd|suppressed"
OUTCOMES: Final = "|".join(sorted(TERMINAL))
RECORDED_QUANTILES: Final = ("0.5", "0.99")
SEVERITIES: Final = ("critical", "warning", "info")
# Refused (4xx) and failed (5xx) webhooks alike: either way CloudMailin's
# events are not counted.
NOT_COUNTED: Final = 'code=~"[45].."'
DELIVERIES: Final = "cloudmailin_time_to_delivery_seconds_count"


def num(value: object) -> str:
    """A threshold as PromQL text, printed as Helm prints the same YAML number."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


class Builder:
    def __init__(self, c: Any) -> None:
        # `c` is a MonitoringConfig, or Placeholders standing in for one.
        self.c = c
        self.by = c.aggregation
        self.sel = c.selector

    def m(self, metric: str, extra: str = "") -> str:
        matchers = ", ".join(x for x in (self.sel, extra) if x)
        return f"{metric}{{{matchers}}}"

    def increase(self, metric: str, window: str, extra: str = "", by: str = "") -> str:
        labels = ", ".join(x for x in (self.by, by) if x)
        return f"sum by ({labels}) (increase({self.m(metric, extra)}[{window}]))"

    def rate(self, metric: str, window: str, extra: str = "", by: str = "") -> str:
        labels = ", ".join(x for x in (self.by, by) if x)
        return f"sum by ({labels}) (rate({self.m(metric, extra)}[{window}]))"

    def events(self, window: str, kinds: str, fn: str = "increase", by: str = "") -> str:
        builder = self.increase if fn == "increase" else self.rate
        return builder("cloudmailin_events_total", window, f'kind=~"{kinds}"', by)

    def on(self) -> str:
        return f"on ({self.by})"

    def recording(self) -> list[dict[str, Any]]:
        c = self.c
        w = c.ratio_window
        outcomes = "cloudmailin:outcomes:increase"
        rules: list[dict[str, Any]] = [
            {
                "record": "cloudmailin:events:rate",
                "expr": self.rate("cloudmailin_events_total", c.rate_window, by="kind"),
            },
            {
                "record": "cloudmailin:events_by_domain:rate",
                "expr": self.rate("cloudmailin_events_total", c.rate_window, by="domain, kind"),
            },
            {"record": outcomes, "expr": self.events(w, OUTCOMES)},
            {
                "record": "cloudmailin:delivery_ratio",
                "expr": f"{self.events(w, 'delivery')}\n/ ({outcomes} > 0)",
            },
            {
                "record": "cloudmailin:bounce_ratio",
                "expr": f"{self.events(w, BOUNCES)}\n/ ({outcomes} > 0)",
            },
            {
                "record": "cloudmailin:spam_rejection_ratio",
                "expr": f"{self.events(w, SPAM)}\n/ ({outcomes} > 0)",
            },
            {
                "record": "cloudmailin:bounce_ratio:domain",
                "expr": f"{self.events(w, BOUNCES, by='domain')}\n/ "
                f"({self.events(w, OUTCOMES, by='domain')} > 0)",
            },
        ]
        buckets = self.rate(
            "cloudmailin_time_to_delivery_seconds_bucket", c.slow_delivery_window, by="le"
        )
        for quantile in (
            RECORDED_QUANTILES[0],
            num(c.slow_delivery_quantile),
            RECORDED_QUANTILES[1],
        ):
            rules.append(
                {
                    "record": "cloudmailin:time_to_delivery_seconds:quantile",
                    "expr": f"histogram_quantile({quantile}, {buckets})",
                    "labels": {"quantile": quantile},
                }
            )
        return rules

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

    def spike_alert(
        self,
        name: str,
        kinds: str,
        knobs: tuple[Any, Any, Any],
        summary: str,
        words: tuple[str, str],
    ) -> dict[str, Any]:
        """Recent rate of `kinds` over `factor` times its baseline, with a volume guard."""
        c = self.c
        factor, min_events, duration = knobs
        recent = self.events(c.spike_window, kinds, "rate")
        baseline = self.events(c.baseline_window, kinds, "rate")
        volume = self.events(c.spike_window, kinds)
        return self.alert(
            name,
            f"{recent}\n> {num(factor)} * {baseline}\n"
            f"and {self.on()} {volume} >= {num(min_events)}",
            duration,
            "warning",
            summary,
            f"{words[0]} over the last {c.spike_window} is more than {num(factor)} times the "
            f"{c.baseline_window} baseline, with at least {num(min_events)} {words[1]}.",
        )

    def alerts(self) -> list[dict[str, Any]]:
        c = self.c
        on = self.on()
        where = "{{ $labels.namespace }}/{{ $labels.job }}"
        outcomes = "cloudmailin:outcomes:increase"
        enough = f"and {on} {outcomes} >= {num(c.min_outcomes)}"
        requests = "cloudmailin_webhook_requests_total"
        return [
            self.alert(
                "CloudMailinBounceRatioHigh",
                f"cloudmailin:bounce_ratio > {num(c.bounce_ratio_warning)}\n{enough}",
                c.bounce_ratio_for,
                "warning",
                f"Bounce ratio above {num(c.bounce_ratio_warning)} ({where})",
                f"Over the last {c.ratio_window} more than {num(c.bounce_ratio_warning)} of "
                f"messages that reached an outcome bounced. CloudMailin asks senders to stay "
                f"under 2%; check the list source and the domains with the most bounces.",
            ),
            self.alert(
                "CloudMailinBounceRatioCritical",
                f"cloudmailin:bounce_ratio > {num(c.bounce_ratio_critical)}\n{enough}",
                c.bounce_ratio_for,
                "critical",
                f"Bounce ratio above {num(c.bounce_ratio_critical)} ({where})",
                f"Over the last {c.ratio_window} more than {num(c.bounce_ratio_critical)} of "
                "outcomes were bounces: the sending account is at risk of suspension. "
                "Stop the campaign that causes it.",
            ),
            self.spike_alert(
                "CloudMailinBounceSpike",
                BOUNCES,
                (c.bounce_spike_factor, c.bounce_spike_min_events, c.bounce_spike_for),
                f"Bounces spiking ({where})",
                ("The bounce rate", "bounces"),
            ),
            self.spike_alert(
                "CloudMailinSpamRejectionSpike",
                SPAM,
                (c.spam_spike_factor, c.spam_spike_min_events, c.spam_spike_for),
                f"Spam rejections spiking ({where})",
                ("The rate of messages suppressed or rejected as spam", "rejections"),
            ),
            self.alert(
                "CloudMailinRetriesExhausted",
                f"{self.events(c.retries_exhausted_window, 'retries_exhausted')} >= "
                f"{num(c.retries_exhausted_threshold)}",
                c.retries_exhausted_for,
                "warning",
                f"Messages running out of delivery retries ({where})",
                f"At least {num(c.retries_exhausted_threshold)} messages gave up after all "
                f"retries in the last {c.retries_exhausted_window}: a receiving domain keeps "
                "deferring us.",
            ),
            self.alert(
                "CloudMailinSlowDelivery",
                f'cloudmailin:time_to_delivery_seconds:quantile{{quantile="'
                f'{num(c.slow_delivery_quantile)}"}}\n> {num(c.slow_delivery_seconds)}\n'
                f"and {on} {self.increase(DELIVERIES, c.slow_delivery_window)}"
                f" >= {num(c.slow_delivery_min_deliveries)}",
                c.slow_delivery_for,
                "warning",
                f"Email delivery is slow ({where})",
                f"The {num(c.slow_delivery_quantile)} quantile of time from registration to "
                f"delivery over {c.slow_delivery_window} is above "
                f"{num(c.slow_delivery_seconds)} seconds.",
            ),
            self.alert(
                "CloudMailinWebhookSilent",
                f"{self.increase('cloudmailin_events_total', c.silent_window)} == 0\n"
                f"and {on} sum by ({self.by}) (increase("
                f"{self.m('cloudmailin_events_total')}[{c.silent_window}] offset 1d)) >= "
                f"{num(c.silent_baseline_events)}",
                c.silent_for,
                "warning",
                f"No CloudMailin events received ({where})",
                f"Not one event arrived in the last {c.silent_window}, although at least "
                f"{num(c.silent_baseline_events)} did in the same window a day ago. Check the "
                "webhook URL in CloudMailin and the Ingress.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinWebhookRejecting",
                f"{self.increase(requests, c.rejecting_window, NOT_COUNTED)}\n/ "
                f"{self.increase(requests, c.rejecting_window)}\n> {num(c.rejecting_ratio)}\n"
                f"and {on} {self.increase(requests, c.rejecting_window)} >= "
                f"{num(c.rejecting_min_requests)}",
                c.rejecting_for,
                "critical",
                f"The webhook is rejecting CloudMailin's requests ({where})",
                f"More than {num(c.rejecting_ratio)} of webhook requests in the last "
                f"{c.rejecting_window} were answered 4xx or 5xx; 401 means the credentials in "
                "CloudMailin's URL do not match the exporter's, 500 an error the exporter "
                "logged with its traceback. Events are being lost.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinDomainOverflow",
                f"{self.increase('cloudmailin_domain_overflow_events_total', c.overflow_window)}"
                " > 0",
                c.overflow_for,
                "info",
                f"Recipient domains folded into other ({where})",
                f"The domain label budget is full, so events of new domains are counted as "
                f'domain="other" (over {c.overflow_window}). Raise MAX_DOMAINS or allow-list '
                "the domains you care about.",
                DASHBOARD_HEALTH,
            ),
            self.alert(
                "CloudMailinStateStoreErrors",
                f"{self.increase('cloudmailin_state_errors_total', c.state_errors_window)} > 0",
                c.state_errors_for,
                "warning",
                f"State store failing ({where})",
                "Calls to the state store keep failing: events are still counted, but "
                "deliveries are not timed and duplicates not recognised.",
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


def helm_groups_template(indent: int) -> str:
    """The rule groups as Helm template text, every knob read from the values."""
    from exporter.monitoring.config import camel  # noqa: PLC0415 - only the generator needs it

    text = yaml.dump(rule_groups(Placeholders()), Dumper=_BlockDumper, sort_keys=False, width=1000)
    # Prometheus' own {{ $labels.x }} must reach the output as written.
    text = text.replace("{{", "\x00").replace("}}", "\x01")
    text = text.replace("\x00", '{{ "{{" }}').replace("\x01", '{{ "}}" }}')
    for name in MonitoringConfig.model_fields:
        text = text.replace(f"@@{name}@@", f"{{{{ {HELM_VALUES_PATH}.{camel(name)} }}}}")
    if "@@" in text:
        raise ValueError("a rule uses a knob that is not a MonitoringConfig field")
    # A PromQL brace next to a value would read as a Go template delimiter.
    text = text.replace("{{{ .Values", '{{ "{" }}{{ .Values').replace("}}}", '}}{{ "}" }}')
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))
