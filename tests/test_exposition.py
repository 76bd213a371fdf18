"""/metrics is rendered directly for speed; it must say exactly what
prometheus-client's own exposition of the same registry says."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.events import KNOWN_KINDS
from exporter.metrics import _labels
from tests.servers import FakeClock, Running, running_exporter

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def samples(families: Any) -> set[tuple[str, tuple[tuple[str, str], ...], float, Any]]:
    out = set()
    for family in families:
        if not family.name.startswith("cloudmailin_"):
            continue
        for s in family.samples:
            exemplar = None
            if s.exemplar is not None:
                exemplar = (
                    tuple(sorted(s.exemplar.labels.items())),
                    s.exemplar.value,
                    None if s.exemplar.timestamp is None else float(s.exemplar.timestamp),
                )
            out.add((s.name, tuple(sorted(s.labels.items())), s.value, exemplar))
    return out


def busy_exporter(clock: FakeClock) -> Any:
    return running_exporter(clock, domain_min_events=1, max_new_kinds=2)


def feed(exporter: Running, clock: FakeClock) -> None:
    for i in range(30):
        ev = {"recipient": f"u{i}@d{i % 7}.example", "message_id": f"m{i}"}
        exporter.post([{"kind": "registration", **ev}, {"kind": "brand_new", **ev}, "bad"])
        clock.advance(7 * i)
        exporter.post(
            [{"kind": KNOWN_KINDS[i % len(KNOWN_KINDS)], **ev}, {"kind": "delivery", **ev}]
        )


def test_text_format_matches_prometheus_client(clock: FakeClock) -> None:
    with busy_exporter(clock) as exporter:
        feed(exporter, clock)
        ours = exporter.client.get("/metrics").text
        reference = generate_latest(exporter.registry).decode()
    assert samples(parse_text(ours)) == samples(parse_text(reference))
    assert len(samples(parse_text(ours))) > 500
    # The runtime collectors come along once.
    assert ours.count("# TYPE process_resident_memory_bytes gauge") == 1


def test_openmetrics_matches_prometheus_client_exemplars_included(clock: FakeClock) -> None:
    with busy_exporter(clock) as exporter:
        feed(exporter, clock)
        ours = exporter.client.get("/metrics", headers={"accept": OPENMETRICS}).text
        reference = om_exposition.generate_latest(exporter.registry).decode()  # type: ignore[no-untyped-call]
    mine = samples(parse_om(ours))  # type: ignore[no-untyped-call]
    theirs = samples(parse_om(reference))  # type: ignore[no-untyped-call]
    assert mine == theirs
    assert sum(1 for s in mine if s[3] is not None) > 5
    assert ours.endswith("# EOF\n")
    assert ours.count("# EOF") == 1


def test_label_values_are_escaped() -> None:
    text = "# TYPE x gauge\nx" + _labels(("a", "b"), ('quo"te', "back\\slash\nline")) + " 1.0\n"
    (family,) = parse_text(text)
    assert family.samples[0].labels == {"a": 'quo"te', "b": "back\\slash\nline"}
