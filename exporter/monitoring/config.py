"""The one config of selectors, thresholds and windows behind every rule and dashboard.

Each field is a knob an operator may turn: from the CLI
(`cloudmailin-exporter rules --bounce-ratio-warning 0.03`) and from the Helm
values (`prometheusRule.config.bounceRatioWarning`). The defaults encode the
judgment documented beside each.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DURATION = r"^[0-9]+(ms|s|m|h|d|w|y)$"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class MonitoringConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("aggregation")
    @classmethod
    def _keeps_what_alerts_need(cls, aggregation: str, info: ValidationInfo) -> str:
        kept = {label.strip() for label in aggregation.split(",")}
        missing = {"namespace", "job"} - kept
        if missing:
            raise ValueError(f"aggregation must keep {', '.join(sorted(missing))}")
        # Alerts read recorded series with the same selector, and those carry
        # only the labels the aggregation keeps.
        selector = str(info.data.get("selector", ""))
        matched = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
        if matched - kept:
            raise ValueError(
                f"the selector matches on {', '.join(sorted(matched - kept))}, which the "
                "aggregation does not keep"
            )
        return aggregation

    selector: str = Field(
        'job=~".*cloudmailin-exporter.*"',
        description="PromQL label matchers that select the exporter's series; alerts apply "
        "them to recorded series too, so they may only name labels the aggregation keeps.",
    )
    aggregation: str = Field(
        "namespace, job",
        validate_default=True,
        description="Labels kept when rules aggregate over pods (one install = one result); "
        "must keep namespace and job, and every label the selector matches on.",
    )
    # 5m: several scrapes at any usual interval, so rate() has points to fit,
    # and short enough that a day's average of it still follows the hour.
    rate_window: str = Field(
        "5m",
        pattern=DURATION,
        description="Window of the recorded per-kind event rates that baselines average.",
    )
    # 1h: long enough that a handful of messages cannot swing the ratio, short
    # enough that a broken list import shows up within the hour.
    ratio_window: str = Field(
        "1h", pattern=DURATION, description="Window of the recorded bounce ratios."
    )
    # CloudMailin asks senders to keep bounces under 2%; past 5% providers
    # start throttling or suspending accounts.
    bounce_ratio_warning: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="Bounces and suppressions per sent message that warn (CloudMailin's 2%).",
    )
    # 5%: where providers start throttling or suspending (see above): page.
    bounce_ratio_critical: float = Field(
        0.05, gt=0, lt=1, description="Bounces and suppressions per sent message that page."
    )
    # 15m: a single bad batch passes within minutes; a list problem stays.
    bounce_ratio_for: str = Field(
        "15m", pattern=DURATION, description="How long the bounce ratio must stay high."
    )
    # 50 outcomes in the ratio window: below that one or two bounces make a
    # "ratio" that means nothing.
    min_outcomes: int = Field(
        50, ge=1, description="Outcomes in the ratio window below which ratios do not alert."
    )
    # 15m: long enough to hold a dozen bounces at modest volume, short enough
    # to catch a bad import while it is still sending.
    spike_window: str = Field(
        "15m", pattern=DURATION, description="Recent window compared with the baseline."
    )
    # 1d: the same mix of recipients as a normal day, so nightly lulls and
    # morning campaigns are both part of "normal".
    baseline_window: str = Field(
        "1d",
        pattern=DURATION,
        description="Window of the baselines that spikes and drops are held against.",
    )
    # 0.9: a day with up to 2.4 hours missing still counts as a day. The gap
    # dilutes the baseline's volume by at most 10%, which the spike factors
    # absorb; a fresh install or a longer outage keeps baseline alerts quiet.
    baseline_min_history: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of the baseline window the install must have been scraped in "
        "before alerts judge against its baseline.",
    )
    # 3x: the hard-bounce share wanders by up to about half with the hour and
    # the campaign; tripling is a change of list or of recipient, not noise.
    bounce_spike_factor: float = Field(
        3,
        gt=1,
        description="Recent hard-bounce share of sent mail over its baseline share that is "
        "a spike.",
    )
    # 10 bounces in the spike window: one bounce at night is a spike against
    # a zero baseline, and must not page anyone.
    bounce_spike_min_events: int = Field(
        10, ge=1, description="Hard bounces in the spike window below which no spike alerts."
    )
    # 10m: most of the spike window, so one burst of bounces is not enough.
    bounce_spike_for: str = Field(
        "10m", pattern=DURATION, description="How long a bounce spike must last."
    )
    # 3x: as for bounces; spam rejections swing with content, and tripling
    # means the content or the sending reputation changed.
    spam_spike_factor: float = Field(
        3,
        gt=1,
        description="Recent spam-rejection share of sent mail over its baseline share that is "
        "a spike.",
    )
    # 10 rejections: as for bounces, a handful against a zero baseline is noise.
    spam_spike_min_events: int = Field(
        10, ge=1, description="Spam rejections in the spike window below which none alerts."
    )
    # 10m: as for bounce spikes.
    spam_spike_for: str = Field(
        "10m", pattern=DURATION, description="How long a spam-rejection spike must last."
    )
    # 1h: CloudMailin gives up on a message once, after retrying for hours, so
    # exhaustion comes in ones; an hour gathers a pattern.
    retries_exhausted_window: str = Field(
        "1h", pattern=DURATION, description="Window in which exhausted retries are counted."
    )
    # 5 an hour: a single dead mailbox gives up once; five is a pattern
    # (a receiving domain refusing, or our IPs being deferred).
    retries_exhausted_threshold: int = Field(
        5, ge=1, description="Messages that ran out of retries in the window that alert."
    )
    # 5m: the count is already over an hour; this only rides out one evaluation.
    retries_exhausted_for: str = Field(
        "5m", pattern=DURATION, description="How long retries must keep running out."
    )
    # p90: the median hides a slow provider; p99 is a few greylisted messages.
    slow_delivery_quantile: float = Field(
        0.9, gt=0, lt=1, description="Quantile of time to delivery that is watched."
    )
    # 10 minutes at p90: healthy delivery takes seconds; greylisting adds
    # 5-15 minutes for some domains, so only p90 past 10 min is a real delay.
    slow_delivery_seconds: float = Field(
        600, gt=0, description="Time to delivery at that quantile that alerts."
    )
    # 30m: longer than greylisting's usual 5-15 min delay, so the quantile
    # holds enough deliveries to be a quantile.
    slow_delivery_window: str = Field(
        "30m", pattern=DURATION, description="Window of the time-to-delivery quantiles."
    )
    # 20 deliveries in the window: a quantile of three observations is noise.
    slow_delivery_min_deliveries: int = Field(
        20, ge=1, description="Deliveries in the window below which slowness does not alert."
    )
    # 15m: delays that clear within a quarter hour need no one.
    slow_delivery_for: str = Field(
        "15m", pattern=DURATION, description="How long delivery must stay slow."
    )
    # 1h: recipients open over hours, so a shorter window mostly measures
    # when this hour's mail happened to be read.
    engagement_window: str = Field(
        "1h", pattern=DURATION, description="Window of the recent opens-per-delivery ratio."
    )
    # 0.3: the open ratio swings by half with the hour and the campaign; mail
    # landing in junk cuts it by 80-95%.
    engagement_drop_ratio: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Recent opens per delivery under this share of the baseline's alert.",
    )
    # 20 expected opens: at the baseline ratio the recent deliveries should
    # have brought at least 20; under the drop (6 or fewer) by chance is then
    # a 1-in-3000 event. Senders without open tracking expect none.
    engagement_min_expected_opens: int = Field(
        20,
        ge=1,
        description="Opens the baseline ratio predicts for the recent deliveries, below "
        "which no drop alerts.",
    )
    # 2: a campaign sent in a burst delivers now and is opened over the next
    # hours, so its opens-per-delivery dips without anything being wrong. The
    # window before, not the day: busy hours double the daily average.
    engagement_delivery_surge: float = Field(
        2,
        gt=1,
        description="Recent delivery rate over the rate in the window before it, above "
        "which opens have not caught up yet and no drop alerts.",
    )
    # 10m: the ratio is already over an hour; this rides out a quiet gap.
    engagement_for: str = Field(
        "10m", pattern=DURATION, description="How long opens must stay collapsed."
    )
    # 30m: a busy sender is never quiet that long; a minute's lull is normal.
    silent_window: str = Field(
        "30m", pattern=DURATION, description="Window without a single event that is silence."
    )
    # 20 events in the same window a day earlier: a sender that usually mails
    # at this hour; a quiet weekend night stays quiet.
    silent_baseline_events: int = Field(
        20,
        ge=1,
        description="Events in the same window one baseline window earlier that make silence odd.",
    )
    # 15m: on top of the window, so a short network blip does not page.
    silent_for: str = Field(
        "15m", pattern=DURATION, description="How long the webhook must stay silent."
    )
    # 15m: long enough for a few requests from a quiet sender, short enough
    # that lost events (CloudMailin retries for hours) are caught early.
    rejecting_window: str = Field(
        "15m", pattern=DURATION, description="Window of the webhook error ratio."
    )
    # 10%: wrong credentials reject everything (100%), and so does an error
    # that fails every request (5xx); a few malformed posts from a sender
    # under test stay well below.
    rejecting_ratio: float = Field(
        0.1, gt=0, le=1, description="Share of webhook requests answered 4xx or 5xx that alerts."
    )
    # 10 requests: below that one failing test post is already 10%.
    rejecting_min_requests: int = Field(
        10, ge=1, description="Webhook requests in the window below which none alerts."
    )
    # 10m: a credential rotation in progress rejects for a minute or two.
    rejecting_for: str = Field(
        "10m", pattern=DURATION, description="How long the webhook must keep rejecting."
    )
    # 1h: overflow is a sizing matter, not urgent; an hour shows it persists.
    overflow_window: str = Field(
        "1h", pattern=DURATION, description="Window in which domain overflow is looked for."
    )
    # 30m: a one-off burst of new domains is not worth raising MAX_DOMAINS.
    overflow_for: str = Field(
        "30m", pattern=DURATION, description="How long domains must keep overflowing."
    )
    # 5m: a Redis failover or restart takes under a minute; five is an outage.
    state_store_down_for: str = Field(
        "5m", pattern=DURATION, description="How long the state store must stay unreachable."
    )
    # 1h: evictions come in bursts when the table is full; an hour keeps them visible.
    evicted_window: str = Field(
        "1h", pattern=DURATION, description="Window in which capacity evictions are counted."
    )
    # 5m: any eviction loses a registration; only ride out one evaluation.
    evicted_for: str = Field(
        "5m", pattern=DURATION, description="How long capacity evictions must keep showing."
    )
    # 1h: restarts make unmatched deliveries for minutes; an hour dilutes that.
    unmatched_window: str = Field(
        "1h", pattern=DURATION, description="Window of the unmatched-deliveries ratio."
    )
    # 5%: after a restart without durable state, the deliveries of messages
    # registered before it are unmatched for minutes, a few percent of an
    # hour; lost registrations make it grow past that and stay.
    unmatched_ratio: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Share of deliveries without a registration that alerts.",
    )
    # 50 deliveries: as min_outcomes; below that a few unmatched make the share.
    unmatched_min_deliveries: int = Field(
        50, ge=1, description="Deliveries in the window below which no unmatched share alerts."
    )
    # 30m: the restart effect above clears within that; lost state does not.
    unmatched_for: str = Field(
        "30m", pattern=DURATION, description="How long deliveries must keep going unmatched."
    )
    # 5m: a rolling restart fails a scrape or two; five minutes is not a restart.
    down_for: str = Field(
        "5m", pattern=DURATION, description="How long a scrape must fail before it pages."
    )
    # 15m: longer than down_for: an uninstall or a renamed job, not a crash.
    absent_for: str = Field(
        "15m", pattern=DURATION, description="How long the exporter may be missing entirely."
    )
    runbook_url: str = Field(
        "https://github.com/cloudmailin-exporter/cloudmailin-exporter/blob/main/docs/runbooks.md",
        description="Page whose #anchors are the runbooks.",
    )
    grafana_url: str = Field(
        "", description="Grafana base URL for dashboard links in alerts (relative if empty)."
    )
