"""The one config of selectors, thresholds and windows behind every rule and dashboard.

Each field is a knob an operator may turn: from the CLI
(`cloudmailin-exporter rules --bounce-ratio-warning 0.03`) and from the Helm
values (`prometheusRule.config.bounceRatioWarning`). The defaults encode the
judgment documented beside each.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DURATION = r"^[0-9]+(ms|s|m|h|d|w|y)$"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class MonitoringConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    selector: str = Field(
        'job=~".*cloudmailin-exporter.*"',
        description="PromQL label matchers that select the exporter's series.",
    )
    aggregation: str = Field(
        "namespace, job",
        description="Labels kept when rules aggregate over pods (one install = one result).",
    )
    rate_window: str = Field(
        "5m", pattern=DURATION, description="Window of the per-second event rates on dashboards."
    )
    # 1h: long enough that a handful of messages cannot swing the ratio, short
    # enough that a broken list import shows up within the hour.
    ratio_window: str = Field(
        "1h", pattern=DURATION, description="Window of the delivery, bounce and spam ratios."
    )
    # CloudMailin asks senders to keep bounces under 2%; past 5% providers
    # start throttling or suspending accounts.
    bounce_ratio_warning: float = Field(
        0.02, gt=0, lt=1, description="Bounce ratio that warns (CloudMailin's guidance)."
    )
    bounce_ratio_critical: float = Field(0.05, gt=0, lt=1, description="Bounce ratio that pages.")
    bounce_ratio_for: str = Field(
        "15m", pattern=DURATION, description="How long the bounce ratio must stay high."
    )
    # 50 outcomes in the ratio window: below that one or two bounces make a
    # "ratio" that means nothing.
    min_outcomes: int = Field(
        50, ge=1, description="Outcomes in the ratio window below which ratios do not alert."
    )
    spike_window: str = Field(
        "15m", pattern=DURATION, description="Recent window compared with the baseline."
    )
    # 1d: the same mix of recipients as a normal day, so nightly lulls and
    # morning campaigns are both part of "normal".
    baseline_window: str = Field(
        "1d",
        pattern=DURATION,
        description="Window of the baseline rate that spikes are held against.",
    )
    bounce_spike_factor: float = Field(
        3, gt=1, description="Recent bounce rate over the baseline rate that is a spike."
    )
    # 10 bounces in the spike window: one bounce at night is a spike against
    # a zero baseline, and must not page anyone.
    bounce_spike_min_events: int = Field(
        10, ge=1, description="Bounces in the spike window below which no spike alerts."
    )
    bounce_spike_for: str = Field(
        "10m", pattern=DURATION, description="How long a bounce spike must last."
    )
    spam_spike_factor: float = Field(
        3, gt=1, description="Recent spam-rejection rate over the baseline that is a spike."
    )
    spam_spike_min_events: int = Field(
        10, ge=1, description="Spam rejections in the spike window below which none alerts."
    )
    spam_spike_for: str = Field(
        "10m", pattern=DURATION, description="How long a spam-rejection spike must last."
    )
    retries_exhausted_window: str = Field(
        "1h", pattern=DURATION, description="Window in which exhausted retries are counted."
    )
    # 5 an hour: a single dead mailbox gives up once; five is a pattern
    # (a receiving domain refusing, or our IPs being deferred).
    retries_exhausted_threshold: int = Field(
        5, ge=1, description="Messages that ran out of retries in the window that alert."
    )
    retries_exhausted_for: str = Field(
        "5m", pattern=DURATION, description="How long retries must keep running out."
    )
    slow_delivery_quantile: float = Field(
        0.9, gt=0, lt=1, description="Quantile of time to delivery that is watched."
    )
    # 10 minutes at p90: healthy delivery takes seconds; greylisting adds
    # 5-15 minutes for some domains, so only p90 past 10 min is a real delay.
    slow_delivery_seconds: float = Field(
        600, gt=0, description="Time to delivery at that quantile that alerts."
    )
    slow_delivery_window: str = Field(
        "30m", pattern=DURATION, description="Window of the time-to-delivery quantiles."
    )
    # 20 deliveries in the window: a quantile of three observations is noise.
    slow_delivery_min_deliveries: int = Field(
        20, ge=1, description="Deliveries in the window below which slowness does not alert."
    )
    slow_delivery_for: str = Field(
        "15m", pattern=DURATION, description="How long delivery must stay slow."
    )
    silent_window: str = Field(
        "30m", pattern=DURATION, description="Window without a single event that is silence."
    )
    # 20 events in the same window a day earlier: a sender that usually mails
    # at this hour; a quiet weekend night stays quiet.
    silent_baseline_events: int = Field(
        20, ge=1, description="Events in the same window a day earlier that make silence odd."
    )
    silent_for: str = Field(
        "15m", pattern=DURATION, description="How long the webhook must stay silent."
    )
    rejecting_window: str = Field(
        "15m", pattern=DURATION, description="Window of the webhook error ratio."
    )
    # 10%: wrong credentials reject everything (100%), and so does an error
    # that fails every request (5xx); a few malformed posts from a sender
    # under test stay well below.
    rejecting_ratio: float = Field(
        0.1, gt=0, le=1, description="Share of webhook requests answered 4xx or 5xx that alerts."
    )
    rejecting_min_requests: int = Field(
        10, ge=1, description="Webhook requests in the window below which none alerts."
    )
    rejecting_for: str = Field(
        "10m", pattern=DURATION, description="How long the webhook must keep rejecting."
    )
    overflow_window: str = Field(
        "1h", pattern=DURATION, description="Window in which domain overflow is looked for."
    )
    overflow_for: str = Field(
        "30m", pattern=DURATION, description="How long domains must keep overflowing."
    )
    state_errors_window: str = Field(
        "5m", pattern=DURATION, description="Window in which state store errors are counted."
    )
    state_errors_for: str = Field(
        "5m", pattern=DURATION, description="How long the state store must keep failing."
    )
    down_for: str = Field(
        "5m", pattern=DURATION, description="How long a scrape must fail before it pages."
    )
    absent_for: str = Field(
        "15m", pattern=DURATION, description="How long the exporter may be missing entirely."
    )
    runbook_url: str = Field(
        "https://github.com/cloudmailin-exporter/cloudmailin-exporter/blob/main/README.md",
        description="Page whose #anchors are the runbooks.",
    )
    grafana_url: str = Field(
        "", description="Grafana base URL for dashboard links in alerts (relative if empty)."
    )
