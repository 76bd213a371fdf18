"""POST /events against a real uvicorn: counting, errors, auth, duplicates, timing."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import orjson
import pytest

from exporter.events import CODES, KNOWN_KINDS
from tests.servers import FakeClock, Running, events_of, events_snapshot, running_exporter


@pytest.fixture
def open_exporter(clock: FakeClock) -> Iterator[Running]:
    """Every domain admitted on first sight, so labels are predictable."""
    with running_exporter(clock, domain_min_events=1) as running:
        yield running


def test_every_kind_is_counted_by_kind_and_domain(open_exporter: Running) -> None:
    def domain(kind: str) -> str:
        return kind.replace("_", "-") + ".example"

    events = [{"kind": kind, "recipient": f"u@{domain(kind)}"} for kind in KNOWN_KINDS]
    response = open_exporter.post(events)
    assert response.status_code == 200
    assert response.json() == {"accepted": len(KNOWN_KINDS), "rejected": 0, "duplicates": 0}
    for kind in KNOWN_KINDS:
        assert events_of(open_exporter, kind, domain(kind)) == 1


def test_aliases_and_numeric_codes(open_exporter: Running) -> None:
    events = [{"kind": code, "recipient": "u@codes.example"} for code in CODES]
    events.append({"kind": "rate_limited", "recipient": "u@codes.example"})
    response = open_exporter.post(events)
    assert response.json()["accepted"] == len(CODES) + 1
    assert events_of(open_exporter, "rate_limit", "codes.example") == 2
    assert events_of(open_exporter, "spamd", "codes.example") == 1
    assert events_of(open_exporter, "rate_limited", "codes.example") == 0


def test_known_kinds_exist_at_zero_before_any_event(exporter: Running) -> None:
    for kind in KNOWN_KINDS:
        assert (
            exporter.registry.get_sample_value(
                "cloudmailin_events_total", {"kind": kind, "domain": "other"}
            )
            == 0
        )
    assert (
        exporter.registry.get_sample_value(
            "cloudmailin_unmatched_events_total", {"kind": "delivery"}
        )
        == 0
    )
    assert (
        exporter.registry.get_sample_value(
            "cloudmailin_time_since_registration_seconds_count", {"kind": "open"}
        )
        == 0
    )


def test_new_kinds_under_their_name_then_other(clock: FakeClock) -> None:
    with running_exporter(clock, max_new_kinds=1, domain_min_events=1) as exporter:
        response = exporter.post(
            [
                {"kind": "quarantined", "recipient": "a@n.example"},
                {"kind": "teleported", "recipient": "a@n.example"},
                {"kind": "Bad Kind", "recipient": "a@n.example"},
            ]
        )
        assert response.json() == {"accepted": 2, "rejected": 1, "duplicates": 0}
        assert events_of(exporter, "quarantined", "n.example") == 1
        assert events_of(exporter, "other", "n.example") == 1
        assert exporter.value("cloudmailin_rejected_events_total", reason="invalid_kind") == 1


def test_invalid_events_do_not_fail_the_batch(open_exporter: Running) -> None:
    response = open_exporter.post(
        [
            {"kind": "delivery", "recipient": "ok@b.example"},
            "not an object",
            {"kind": "delivery"},
            {"kind": "delivery", "recipient": "a@b.example", "timestamp": "later"},
            {"kind": "delivery", "recipient": "a@b.example", "message_id": ["x"]},
        ]
    )
    assert response.json() == {"accepted": 1, "rejected": 4, "duplicates": 0}
    for reason in ("not_an_object", "invalid_recipient", "invalid_timestamp", "invalid_message_id"):
        assert open_exporter.value("cloudmailin_rejected_events_total", reason=reason) == 1
    assert events_of(open_exporter, "delivery", "b.example") == 1


def test_empty_batch(exporter: Running) -> None:
    response = exporter.post([])
    assert response.json() == {"accepted": 0, "rejected": 0, "duplicates": 0}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\x00", "application/json", 400),
        (b"[]", "application/json", 400),
        (b'{"events": {}}', "application/json", 400),
        (b'{"events": "x"}', "application/json", 400),
        (b'{"other": []}', "application/json", 400),
        (b"", "application/json", 400),
        (b'{"events": []}', "text/plain", 415),
        (b'{"events": []}', "application/x-www-form-urlencoded", 415),
        (b'{"events": []}', None, 415),
    ],
)
def test_bad_requests_get_a_json_error_and_change_nothing(
    exporter: Running, body: bytes, content_type: str | None, status: int
) -> None:
    before = events_snapshot(exporter)
    headers = {} if content_type is None else {"content-type": content_type}
    response = exporter.client.post("/events", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]
    assert events_snapshot(exporter) == before
    assert exporter.value("cloudmailin_webhook_requests_total", code=str(status)) == 1


def test_json_with_parameters_and_suffix_is_json(exporter: Running) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.cloudmailin+json"):
        response = exporter.client.post(
            "/events", content=b'{"events": []}', headers={"content-type": content_type}
        )
        assert response.status_code == 200


def test_other_methods_are_refused(exporter: Running) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = exporter.client.request(method, "/events")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json() == {"error": "use POST"}
    assert exporter.value("cloudmailin_webhook_requests_total", code="405") == 4


def test_declared_oversized_body_is_refused_before_reading(clock: FakeClock) -> None:
    with running_exporter(clock, max_body_bytes=2048) as exporter:
        before = events_snapshot(exporter)
        events = [{"kind": "delivery", "recipient": f"u{i}@big.example"} for i in range(100)]
        response = exporter.post(events)
        assert response.status_code == 413
        assert "2048" in response.json()["error"]
        assert events_snapshot(exporter) == before


def test_streamed_oversized_body_is_cut_off(clock: FakeClock) -> None:
    with running_exporter(clock, max_body_bytes=4096) as exporter:
        before = events_snapshot(exporter)

        def chunks() -> Iterator[bytes]:
            yield b'{"events": ['
            for i in range(2000):
                yield b'{"kind": "delivery", "recipient": "u%d@big.example"},' % i
            yield b"{}]}"

        # No Content-Length: the limit must be enforced while reading.
        response = exporter.client.post(
            "/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert events_snapshot(exporter) == before
        assert exporter.client.get("/healthz").status_code == 200


def test_body_at_the_limit_is_accepted(clock: FakeClock) -> None:
    body = orjson.dumps({"events": [{"kind": "open", "recipient": "a@limit.example"}]})
    padded = body[:-1] + b" " * (1024 - len(body)) + b"}"
    assert len(padded) == 1024
    with running_exporter(clock, max_body_bytes=1024) as exporter:
        response = exporter.client.post(
            "/events", content=padded, headers={"content-type": "application/json"}
        )
        assert response.status_code == 200
        assert response.json()["accepted"] == 1


class TestAuthentication:
    @pytest.fixture
    def secured(self, clock: FakeClock) -> Iterator[Running]:
        with running_exporter(
            clock,
            basic_auth_username="cloudmailin",
            basic_auth_password="s3cret:with:colons",
            bearer_token="tok-123",
            domain_min_events=1,
        ) as running:
            yield running

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"authorization": "Basic " + base64.b64encode(b"cloudmailin:wrong").decode()},
            {"authorization": "Basic " + base64.b64encode(b"other:s3cret:with:colons").decode()},
            {"authorization": "Basic !!!not-base64"},
            {"authorization": "Bearer tok-1234"},
            {"authorization": "Bearer"},
            {"authorization": "Digest abc"},
            {"authorization": "tok-123"},
        ],
    )
    def test_refused_without_the_right_credentials(
        self, secured: Running, headers: dict[str, str]
    ) -> None:
        before = events_snapshot(secured)
        response = secured.post([{"kind": "delivery", "recipient": "a@x.example"}], headers=headers)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Basic realm="cloudmailin-exporter"')
        assert "Bearer" in challenge
        assert "s3cret" not in response.text
        assert events_snapshot(secured) == before
        assert secured.value("cloudmailin_webhook_requests_total", code="401") == 1

    def test_url_credentials_as_cloudmailin_sends_them(self, secured: Running) -> None:
        url = secured.url.replace("http://", "http://cloudmailin:s3cret%3Awith%3Acolons@")
        response = httpx.post(
            url + "/events", json={"events": [{"kind": "delivery", "recipient": "a@x.example"}]}
        )
        assert response.status_code == 200
        assert events_of(secured, "delivery", "x.example") == 1

    def test_bearer_token(self, secured: Running) -> None:
        response = secured.post(
            [{"kind": "open", "recipient": "a@x.example"}],
            headers={"authorization": "Bearer tok-123"},
        )
        assert response.status_code == 200

    def test_scrapes_and_probes_need_no_credentials(self, secured: Running) -> None:
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            assert secured.client.get(path).status_code == 200


class TestDuplicates:
    def test_retried_body_is_counted_once(self, open_exporter: Running) -> None:
        body = orjson.dumps(
            {
                "events": [
                    {"kind": "registration", "recipient": "a@d.example", "message_id": "m1"},
                    {"kind": "open", "recipient": "a@d.example", "message_id": "m1"},
                    {"kind": "open", "recipient": "a@d.example"},
                    {"kind": "brand_new", "recipient": "a@d.example"},
                ]
            }
        )
        headers = {"content-type": "application/json"}
        first = open_exporter.client.post("/events", content=body, headers=headers)
        second = open_exporter.client.post("/events", content=body, headers=headers)
        assert first.json() == {"accepted": 4, "rejected": 0, "duplicates": 0}
        assert second.json() == {"accepted": 0, "rejected": 0, "duplicates": 4}
        assert events_of(open_exporter, "open", "d.example") == 2
        assert open_exporter.value("cloudmailin_duplicate_events_total", kind="open") == 2
        assert open_exporter.value("cloudmailin_duplicate_events_total", kind="registration") == 1
        assert open_exporter.value("cloudmailin_pending_messages") == 1

    def test_second_copy_of_a_once_per_message_event(self, open_exporter: Running) -> None:
        event = {"kind": "delivery", "recipient": "a@d.example", "message_id": "m2"}
        first = open_exporter.post([event])
        # A different body (another event beside it) carrying the same delivery.
        second = open_exporter.post([event, {"kind": "open", "recipient": "a@d.example"}])
        assert first.json()["accepted"] == 1
        assert second.json() == {"accepted": 1, "rejected": 0, "duplicates": 1}
        assert events_of(open_exporter, "delivery", "d.example") == 1
        assert open_exporter.value("cloudmailin_duplicate_events_total", kind="delivery") == 1

    def test_repeated_opens_are_not_duplicates(self, open_exporter: Running) -> None:
        event = {"kind": "open", "recipient": "a@d.example", "message_id": "m3"}
        open_exporter.post([event])
        response = open_exporter.post([event, event])
        assert response.json() == {"accepted": 2, "rejected": 0, "duplicates": 0}


class TestTiming:
    def test_time_to_delivery_from_registration(
        self, open_exporter: Running, clock: FakeClock
    ) -> None:
        rcpt = "someone@Gmail.COM"
        open_exporter.post([{"kind": "registration", "recipient": rcpt, "message_id": "t1"}])
        assert open_exporter.value("cloudmailin_pending_messages") == 1
        clock.advance(45)
        open_exporter.post([{"kind": "delivery", "recipient": rcpt, "message_id": "t1"}])
        name = "cloudmailin_time_to_delivery_seconds"
        assert open_exporter.value(name + "_count", domain="gmail.com") == 1
        assert open_exporter.value(name + "_sum", domain="gmail.com") == pytest.approx(45)
        assert open_exporter.value(name + "_bucket", domain="gmail.com", le="30.0") == 0
        assert open_exporter.value(name + "_bucket", domain="gmail.com", le="60.0") == 1
        assert (
            open_exporter.value(
                "cloudmailin_time_since_registration_seconds_count", kind="delivery"
            )
            == 1
        )
        assert open_exporter.value("cloudmailin_pending_messages") == 0

    def test_event_timestamps_are_the_event_times(self, open_exporter: Running) -> None:
        open_exporter.post(
            [
                {"kind": "registration", "recipient": "a@t.example", "message_id": "t2",
                 "created_at": "2026-11-27T10:00:00Z"},
                {"kind": "dispatch", "recipient": "a@t.example", "message_id": "t2",
                 "timestamp": 1_795_773_603},
                {"kind": "delivery", "recipient": "a@t.example", "message_id": "t2",
                 "timestamp": "2026-11-27T10:20:00Z"},
            ]
        )  # fmt: skip
        name = "cloudmailin_time_since_registration_seconds_sum"
        assert open_exporter.value(name, kind="dispatch") == pytest.approx(3)
        assert open_exporter.value(name, kind="delivery") == pytest.approx(1200)

    def test_engagement_after_delivery_is_timed_once(
        self, open_exporter: Running, clock: FakeClock
    ) -> None:
        ev = {"recipient": "a@t.example", "message_id": "t3"}
        open_exporter.post([{"kind": "registration", **ev}])
        clock.advance(10)
        open_exporter.post([{"kind": "delivery", **ev}])
        clock.advance(3600)
        open_exporter.post([{"kind": "open", **ev}, {"kind": "click", **ev}])
        clock.advance(60)
        open_exporter.post([{"kind": "open", **ev}])
        name = "cloudmailin_time_since_registration_seconds"
        assert open_exporter.value(name + "_count", kind="open") == 1
        assert open_exporter.value(name + "_sum", kind="open") == pytest.approx(3610)
        assert open_exporter.value(name + "_sum", kind="click") == pytest.approx(3610)

    def test_unmatched_delivery(self, open_exporter: Running) -> None:
        open_exporter.post([{"kind": "delivery", "recipient": "a@t.example", "message_id": "nope"}])
        assert open_exporter.value("cloudmailin_unmatched_events_total", kind="delivery") == 1
        assert events_of(open_exporter, "delivery", "t.example") == 1

    def test_registration_after_its_delivery(
        self, open_exporter: Running, clock: FakeClock
    ) -> None:
        ev = {"recipient": "a@t.example", "message_id": "t4"}
        open_exporter.post([{"kind": "delivery", **ev}])
        response = open_exporter.post([{"kind": "registration", **ev}])
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert open_exporter.value("cloudmailin_pending_messages") == 0
        clock.advance(5)
        open_exporter.post([{"kind": "open", **ev}])
        assert (
            open_exporter.value("cloudmailin_time_since_registration_seconds_count", kind="open")
            == 0
        )

    def test_expired_registrations_are_counted(self, clock: FakeClock) -> None:
        with running_exporter(clock, pending_ttl_seconds=600) as exporter:
            exporter.post([{"kind": "registration", "recipient": "a@t.example", "message_id": "x"}])
            clock.advance(601)
            exporter.post([{"kind": "open", "recipient": "b@t.example"}])
            assert exporter.value("cloudmailin_pending_evicted_total", reason="expired") == 1
            assert exporter.value("cloudmailin_pending_messages") == 0


class TestDomains:
    def test_budget_and_overflow(self, clock: FakeClock) -> None:
        with running_exporter(
            clock, max_domains=2, domain_min_events=1, domain_allowlist="vip.example"
        ) as exporter:
            exporter.post(
                [{"kind": "delivery", "recipient": f"u@d{i}.example"} for i in range(5)]
                + [{"kind": "delivery", "recipient": "u@VIP.example"}]
                + [{"kind": "delivery", "recipient": "not-an-address"}]
            )
            value = exporter.value
            assert value("cloudmailin_events_total", kind="delivery", domain="d0.example") == 1
            assert value("cloudmailin_events_total", kind="delivery", domain="d1.example") == 1
            assert value("cloudmailin_events_total", kind="delivery", domain="other") == 3
            assert value("cloudmailin_events_total", kind="delivery", domain="vip.example") == 1
            assert value("cloudmailin_events_total", kind="delivery", domain="invalid") == 1
            assert value("cloudmailin_domain_overflow_events_total") == 3
            domains = {
                s.labels["domain"]
                for f in exporter.registry.collect()
                if f.name == "cloudmailin_events"
                for s in f.samples
            }
            assert domains == {"d0.example", "d1.example", "vip.example", "invalid", "other"}

    def test_default_admission_needs_several_events(self, exporter: Running) -> None:
        for i in range(5):
            exporter.post([{"kind": "delivery", "recipient": f"u{i}@yahoo.com"}])
        assert events_of(exporter, "delivery", "other") == 4
        assert events_of(exporter, "delivery", "yahoo.com") == 1
