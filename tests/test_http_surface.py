"""GET routes and the metric contract, against a real uvicorn."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import __version__
from tests.servers import FakeClock, Running

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# DESIGN.md's metric table: name (as exposed), type, labels.
CONTRACT = {
    "cloudmailin_events": ("counter", {"kind", "domain"}),
    "cloudmailin_time_to_delivery_seconds": ("histogram", {"domain"}),
    "cloudmailin_time_since_registration_seconds": ("histogram", {"kind"}),
    "cloudmailin_pending_messages": ("gauge", set()),
    "cloudmailin_pending_evicted": ("counter", {"reason"}),
    "cloudmailin_unmatched_events": ("counter", {"kind"}),
    "cloudmailin_duplicate_events": ("counter", {"kind"}),
    "cloudmailin_rejected_events": ("counter", {"reason"}),
    "cloudmailin_webhook_requests": ("counter", {"code"}),
    "cloudmailin_webhook_request_duration_seconds": ("histogram", set()),
    "cloudmailin_domain_overflow_events": ("counter", set()),
    "cloudmailin_last_event_timestamp_seconds": ("gauge", set()),
    "cloudmailin_state_errors": ("counter", {"operation"}),
    "cloudmailin_state_store_up": ("gauge", set()),
    "cloudmailin_exporter_build_info": ("gauge", {"version"}),
}


def test_metric_names_types_and_labels_match_the_design(exporter: Running) -> None:
    text = exporter.client.get("/metrics").text
    parsed = parse_text(text)
    families = {f.name: f for f in parsed if f.name.startswith("cloudmailin_")}
    assert set(families) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, f"{name} has no series at start-up"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, name
    info = families["cloudmailin_exporter_build_info"].samples[0]
    assert (info.labels["version"], info.value) == (__version__, 1)
    assert {s.labels["operation"] for s in families["cloudmailin_state_errors"].samples} == {
        "connect", "write", "expire",
    }  # fmt: skip
    assert {s.labels["reason"] for s in families["cloudmailin_pending_evicted"].samples} == {
        "expired", "capacity",
    }  # fmt: skip


def test_text_format_by_default(exporter: Running) -> None:
    response = exporter.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in response.text
    assert "process_resident_memory_bytes" in response.text


def test_openmetrics_with_exemplars_when_asked(exporter: Running, clock: FakeClock) -> None:
    for i in range(5):
        exporter.post(
            [{"kind": "registration", "recipient": f"u{i}@x.example", "message_id": "msg-abc"}]
        )
    clock.advance(90)
    exporter.post([{"kind": "delivery", "recipient": "u4@x.example", "message_id": "msg-abc"}])
    response = exporter.client.get("/metrics", headers={"accept": OPENMETRICS})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_om(response.text)}  # type: ignore[no-untyped-call]
    buckets = [
        s
        for s in families["cloudmailin_time_to_delivery_seconds"].samples
        if s.name.endswith("_bucket") and s.exemplar is not None
    ]
    assert len(buckets) == 1
    exemplar = buckets[0].exemplar
    assert exemplar is not None
    assert buckets[0].labels == {"domain": "x.example", "le": "120.0"}
    assert exemplar.labels == {"message_id": "msg-abc"}
    assert exemplar.value == 90
    assert float(exemplar.timestamp) == clock.now


def test_prometheus_scrape_accept_header_gets_openmetrics(exporter: Running) -> None:
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    response = exporter.client.get("/metrics", headers={"accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")


def test_health_and_readiness(exporter: Running) -> None:
    assert exporter.client.get("/healthz").json() == {"status": "ok"}
    assert exporter.client.get("/readyz").json() == {"status": "ready", "state_store": "up"}
    assert exporter.value("cloudmailin_state_store_up") == 1
    # A store outage shows in the body and the gauge, never in the status:
    # the exporter still takes webhooks.
    exporter.store.up = False
    response = exporter.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "state_store": "down"}
    assert exporter.value("cloudmailin_state_store_up") == 0
    assert "state store down" in exporter.client.get("/").text


def test_landing_page_shows_version_links_and_live_totals(exporter: Running) -> None:
    exporter.post([{"kind": "bounce", "recipient": "a@x.example"}] * 3)
    page = exporter.client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert __version__ in page.text
    for link in ('href="metrics"', 'href="healthz"', 'href="readyz"'):
        assert link in page.text
    assert "<tr><td>bounce</td><td>3</td></tr>" in page.text
    assert "<tr><td>delivery</td><td>0</td></tr>" in page.text


def test_unknown_route_is_a_json_404(exporter: Running) -> None:
    response = exporter.client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
    assert exporter.client.post("/metrics").status_code == 405


def test_request_accounting(exporter: Running) -> None:
    exporter.post([{"kind": "open", "recipient": "a@x.example"}])
    exporter.post([{"kind": "open", "recipient": "a@x.example"}])
    assert exporter.value("cloudmailin_webhook_requests_total", code="200") == 2
    assert exporter.value("cloudmailin_webhook_request_duration_seconds_count") == 2
    assert exporter.value("cloudmailin_last_event_timestamp_seconds") == 1_800_000_000.0
