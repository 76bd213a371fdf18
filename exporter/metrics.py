"""The exporter's metric families, kept in plain dicts and exposed by a collector.

prometheus-client's labelled children cost a lock and a label lookup per
increment, most of the time of a busy webhook; the event loop is the only
writer here, so plain dicts are exact and several times faster.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.domains import DomainGuard
from exporter.events import KNOWN_KINDS, OTHER, REJECT_REASONS, KindCatalogue
from exporter.stores.base import EVICTION_REASONS, OPERATIONS, StateStore

PREFIX: Final = "cloudmailin_"
# Email is slow and its delays are spread over five orders of magnitude:
# most deliveries take seconds, greylisting holds mail for 5-30 minutes,
# deferrals are retried for hours, and MTAs give up after 1-3 days. Roughly
# three bounds per decade keeps quantile estimates within about a factor of
# two everywhere while each histogram stays at 17 series.
DELIVERY_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 259200.0,
)  # fmt: skip
# A webhook batch is handled in well under a millisecond per event when
# healthy; the top bounds catch a slow state store (whose timeout is 0.5 s).
REQUEST_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Response codes created at start so error-ratio alerts see a 0, not nothing.
KNOWN_CODES: Final = ("200", "400", "401", "405", "413", "415", "500")
# OpenMetrics caps an exemplar's label set at 128 characters.
MAX_EXEMPLAR_ID: Final = 128 - len("message_id")
TIMED_KINDS: Final = tuple(k for k in KNOWN_KINDS if k != "registration")


class Histogram:
    """One histogram series: per-bucket counts, a sum and the latest exemplar per bucket."""

    __slots__ = ("bounds", "counts", "exemplars", "texts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.texts = [*map(_bound_text, bounds), "+Inf"]
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        # (message id, value, time) of the latest observation per bucket; the
        # Exemplar objects are only built when scraped.
        self.exemplars: list[tuple[str, float, float | None] | None] = [None] * (len(bounds) + 1)

    def observe(self, value: float, message_id: str | None = None, at: float | None = None) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's `le` bucket.
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self.total += value
        if message_id is not None and len(message_id) <= MAX_EXEMPLAR_ID:
            self.exemplars[i] = (message_id, value, at)

    def buckets(self) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
        out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        running = 0
        for bound, count, exemplar in zip(self.texts, self.counts, self.exemplars, strict=True):
            running += count
            if exemplar is None:
                out.append((bound, running))
            else:
                message_id, value, at = exemplar
                out.append((bound, running, Exemplar({"message_id": message_id}, value, at)))
        return out


def _bound_text(bound: float) -> str:
    return repr(float(bound))


class ExporterMetrics(Collector):
    """Every cloudmailin_* family, registered on the registry it is given."""

    def __init__(
        self,
        registry: CollectorRegistry,
        version: str,
        kinds: KindCatalogue,
        domains: DomainGuard,
        store: StateStore,
    ) -> None:
        self.version = version
        self.kinds = kinds
        self.domains = domains
        self.store = store
        # Accepted events: domain -> kind -> count. Nested rather than keyed
        # by (kind, domain) so that counting an event builds no tuple.
        self.events: dict[str, dict[str, int]] = {}
        self.to_delivery: dict[str, Histogram] = {}
        self.since_registration = {k: Histogram(DELIVERY_BUCKETS) for k in TIMED_KINDS}
        self.unmatched = dict.fromkeys(TIMED_KINDS, 0)
        self.duplicates = dict.fromkeys(KNOWN_KINDS, 0)
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.requests = dict.fromkeys(KNOWN_CODES, 0)
        self.request_duration = Histogram(REQUEST_BUCKETS)
        self.last_event = 0.0
        self.add_domain(OTHER)
        for domain in domains.allowlist:
            self.add_domain(domain)
        registry.register(self)

    def add_domain(self, domain: str) -> None:
        """Create a domain's series at 0, so its first bounce shows in rate()."""
        by_kind = self.events.setdefault(domain, {})
        for kind in KNOWN_KINDS:
            by_kind.setdefault(kind, 0)
        self.to_delivery.setdefault(domain, Histogram(DELIVERY_BUCKETS))

    def count_event(self, kind: str, domain: str) -> None:
        by_kind = self.events.get(domain)
        if by_kind is None:
            self.add_domain(domain)
            by_kind = self.events[domain]
        by_kind[kind] = by_kind.get(kind, 0) + 1

    def totals(self) -> dict[str, int]:
        """Accepted events by kind, for the landing page."""
        out = dict.fromkeys(KNOWN_KINDS, 0)
        for by_kind in self.events.values():
            for kind, count in by_kind.items():
                out[kind] = out.get(kind, 0) + count
        return out

    def families(self) -> Iterator[Family]:
        """Every family with its current series, in exposition order."""
        yield Family("events", "counter", "Accepted CloudMailin events.", ("kind", "domain"),
                     sorted(((kind, domain), count) for domain, by_kind in self.events.items()
                            for kind, count in by_kind.items()))  # fmt: skip
        yield _by_one("unmatched_events", "Events to be timed whose message's registration was "
                      "never seen.", "kind", self.unmatched)  # fmt: skip
        yield _by_one("duplicate_events", "Events recognised as re-deliveries and not counted "
                      "again.", "kind", self.duplicates)  # fmt: skip
        yield _by_one("rejected_events", "Events in a batch that failed validation.", "reason",
                      self.rejected)  # fmt: skip
        yield _by_one("webhook_requests", "Webhook POSTs by HTTP status.", "code", self.requests)
        evicted = {r: self.store.evicted.get(r, 0) for r in EVICTION_REASONS}
        yield _by_one("pending_evicted", "Pending messages dropped before their terminal event.",
                      "reason", evicted)  # fmt: skip
        yield _by_one("state_errors", "Failed calls to the state store.", "operation",
                      {op: self.store.errors.get(op, 0) for op in OPERATIONS})  # fmt: skip
        yield Family("domain_overflow_events", "counter", "Events whose domain was folded into "
                     "other because max_domains was reached.", (),
                     [((), self.domains.overflow_events)])  # fmt: skip
        by_domain = [((d,), h) for d, h in sorted(self.to_delivery.items())]
        yield Family("time_to_delivery_seconds", "histogram", "Seconds from a message's "
                     "registration to its delivery, per recipient.", ("domain",),
                     histograms=by_domain)  # fmt: skip
        by_kind = [((k,), h) for k, h in sorted(self.since_registration.items())]
        yield Family("time_since_registration_seconds", "histogram", "Seconds from a message's "
                     "registration to the first event of each later kind.", ("kind",),
                     histograms=by_kind)  # fmt: skip
        yield Family("webhook_request_duration_seconds", "histogram", "Seconds to handle one "
                     "webhook POST.", (), histograms=[((), self.request_duration)])  # fmt: skip
        yield Family("pending_messages", "gauge", "Registered messages without a terminal event "
                     "yet (shared across replicas with a shared store: aggregate with max).", (),
                     [((), self.store.pending)])  # fmt: skip
        yield Family("last_event_timestamp_seconds", "gauge", "Unix time the last event was "
                     "accepted.", (), [((), self.last_event)])  # fmt: skip
        yield Family("state_store_up", "gauge", "1 while the state store answers, 0 while it "
                     "does not (events are still counted; timing pauses).", (),
                     [((), 1 if self.store.up else 0)])  # fmt: skip
        yield Family("exporter_build_info", "gauge", "Always 1; the exporter's version.",
                     ("version",), [((self.version,), 1)])  # fmt: skip

    def collect(self) -> Iterator[Metric]:
        """The families as prometheus-client objects, for registries and tests."""
        for family in self.families():
            name = PREFIX + family.name
            if family.kind == "histogram":
                histogram = HistogramMetricFamily(name, family.help, labels=family.labels)
                for values, hist in family.histograms:
                    histogram.add_metric(values, hist.buckets(), hist.total)
                yield histogram
            else:
                cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
                metric = cls(name, family.help, labels=family.labels)
                for values, value in family.series:
                    metric.add_metric(values, value)
                yield metric

    def render(self, openmetrics: bool) -> bytes:
        """Our families in the Prometheus text format, or OpenMetrics (with exemplars).

        Written directly rather than through prometheus-client's generic
        exposition, which builds an object per sample: at 100 domains that is
        thousands of series and most of a scrape's time.
        """
        out: list[str] = []
        for family in self.families():
            name = PREFIX + family.name
            title = name + "_total" if family.kind == "counter" and not openmetrics else name
            out.append(f"# HELP {title} {family.help}\n# TYPE {title} {family.kind}\n")
            names = family.labels
            for labels, hist in family.histograms:
                _render_histogram(out, name, _labels(names, labels), hist, openmetrics)
            sample = name + "_total" if family.kind == "counter" else name
            for values, value in family.series:
                out.append(f"{sample}{_labels(names, values)} {float(value)!r}\n")
        return "".join(out).encode()


@dataclass(slots=True)
class Family:
    """One metric family and its series: values, or Histograms for histograms."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    series: Sequence[tuple[tuple[str, ...], float]] = ()
    histograms: Sequence[tuple[tuple[str, ...], Histogram]] = ()


def _by_one(name: str, doc: str, label: str, values: dict[str, int]) -> Family:
    return Family(name, "counter", doc, (label,), [((k,), v) for k, v in sorted(values.items())])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _render_histogram(
    out: list[str], name: str, labels: str, hist: Histogram, openmetrics: bool
) -> None:
    inner = labels[1:-1] + "," if labels else ""
    running = 0
    for bound, count, exemplar in zip(hist.texts, hist.counts, hist.exemplars, strict=True):
        running += count
        line = f'{name}_bucket{{{inner}le="{bound}"}} {float(running)!r}'
        if openmetrics and exemplar is not None:
            message_id, value, at = exemplar
            stamp = "" if at is None else f" {at!r}"
            line += f' # {{message_id="{_escape(message_id)}"}} {value!r}{stamp}'
        out.append(line + "\n")
    out.append(f"{name}_count{labels} {float(running)!r}\n{name}_sum{labels} {hist.total!r}\n")


def wall_clock() -> float:
    return time.time()


Clock = Callable[[], float]
