"""POST /events against a real uvicorn: request bodies and payload spellings seen in
the wild (issue 12): Content-Encoding, numeric kinds written as floats, recipients
with a display name."""

from __future__ import annotations

import gzip
import resource
import zlib
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.servers import FakeClock, Running, events_of, events_snapshot, running_exporter

# The first example.
OPEN_BODY = b'{"events":[{"kind":"open","recipient":"u@example.net","message_id":"e1"}]}'
JSON = ("content-type", "application/json")


@pytest.fixture
def open_exporter(clock: FakeClock) -> Iterator[Running]:
    """Every domain admitted on first sight, so labels are predictable."""
    with running_exporter(clock, domain_min_events=1) as running:
        yield running


def post(
    exporter: Running, body: bytes, *encodings: str, client: httpx.Client | None = None
) -> httpx.Response:
    """POST `body` as JSON with one Content-Encoding line per item of `encodings`."""
    headers = [JSON, *(("content-encoding", e) for e in encodings)]
    return (client or exporter.client).post("/events", content=body, headers=headers)


def padded(events: list[object], size: int) -> bytes:
    """A JSON body of exactly `size` bytes carrying `events`."""
    body = orjson.dumps({"events": events})
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def assert_refused(exporter: Running, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]
    assert exporter.value("cloudmailin_webhook_requests_total", code=str(status)) == 1
    assert exporter.value("cloudmailin_webhook_requests_total", code="200") == 0


class TestContentEncoding:
    @pytest.mark.parametrize(
        "encoding",
        [
            "gzip",
            "x-gzip",
            "GZIP",
            "X-Gzip",
            "identity ,\tgzip",
            "identity, gzip",
            "gzip, IDENTITY",
            "gzip,",
        ],
    )
    def test_gzip_is_decoded(self, open_exporter: Running, encoding: str) -> None:
        response = post(open_exporter, gzip.compress(OPEN_BODY), encoding)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert events_of(open_exporter, "open", "example.net") == 1
        assert open_exporter.value("cloudmailin_webhook_requests_total", code="200") == 1

    def test_codings_on_separate_lines_are_one_list(self, open_exporter: Running) -> None:
        response = post(open_exporter, gzip.compress(OPEN_BODY), "identity", "gzip")
        assert response.json()["accepted"] == 1
        assert events_of(open_exporter, "open", "example.net") == 1

    @pytest.mark.parametrize("encodings", [(), ("identity",), ("IDENTITY",), ("",)])
    def test_identity_and_no_coding_are_plain(
        self, open_exporter: Running, encodings: tuple[str, ...]
    ) -> None:
        response = post(open_exporter, OPEN_BODY, *encodings)
        assert response.json()["accepted"] == 1
        assert events_of(open_exporter, "open", "example.net") == 1

    @pytest.mark.parametrize(
        "encodings",
        [
            ("deflate",), ("br",), ("zstd",), ("compress",), ("x-compress",), ("*",),
            ("gzip, gzip",), ("gzip, br",), ("br, gzip",), ("gzip, deflate",), ("gzip;q=1",),
            ("gzip deflate",), ("gzipp",), ("identity, br",), ("gzip", "gzip"), ("gzip", "br"),
        ],
    )  # fmt: skip
    @pytest.mark.parametrize("compressed", [True, False])
    def test_other_codings_are_refused_and_count_nothing(
        self, exporter: Running, encodings: tuple[str, ...], compressed: bool
    ) -> None:
        before = events_snapshot(exporter)
        body = gzip.compress(OPEN_BODY) if compressed else OPEN_BODY
        response = post(exporter, body, *encodings)
        assert_refused(exporter, response, 415)
        assert "Content-Encoding" in response.json()["error"]
        assert response.headers["accept-encoding"] == "gzip"
        assert events_snapshot(exporter) == before

    def test_credentials_are_checked_before_the_coding(self, clock: FakeClock) -> None:
        with running_exporter(clock, bearer_token="tok") as exporter:
            response = post(exporter, OPEN_BODY, "br")
            assert_refused(exporter, response, 401)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(OPEN_BODY, id="plain-json"),
            pytest.param(b"", id="empty"),
            pytest.param(gzip.compress(OPEN_BODY)[:10], id="header-only"),
            pytest.param(gzip.compress(OPEN_BODY)[:-4], id="no-length"),
            pytest.param(gzip.compress(OPEN_BODY)[:-8], id="no-trailer"),
            pytest.param(gzip.compress(OPEN_BODY)[:30], id="cut-mid-stream"),
            pytest.param(gzip.compress(OPEN_BODY) + b"trailing", id="trailing-garbage"),
            pytest.param(gzip.compress(OPEN_BODY) + b"\0\0\0\0", id="trailing-zeros"),
            pytest.param(b"\x1f\x8c" + gzip.compress(OPEN_BODY)[2:], id="bad-magic"),
            pytest.param(zlib.compress(OPEN_BODY), id="zlib-not-gzip"),
        ],
    )
    def test_corrupt_or_truncated_gzip_is_a_400(self, exporter: Running, body: bytes) -> None:
        before = events_snapshot(exporter)
        response = post(exporter, body, "gzip")
        assert_refused(exporter, response, 400)
        assert "gzip" in response.json()["error"]
        assert events_snapshot(exporter) == before

    @pytest.mark.parametrize("field", ["crc", "length"])
    def test_a_wrong_trailer_is_a_400(self, exporter: Running, field: str) -> None:
        good = gzip.compress(OPEN_BODY)
        # The trailer is CRC-32 then the length, 4 bytes each (RFC 1952 2.3.1).
        at = len(good) - (8 if field == "crc" else 4)
        bad = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]
        before = events_snapshot(exporter)
        assert_refused(exporter, post(exporter, bad, "gzip"), 400)
        assert events_snapshot(exporter) == before

    def test_gzip_of_something_that_is_not_json_is_a_400(self, exporter: Running) -> None:
        response = post(exporter, gzip.compress(b"{not json"), "gzip")
        assert_refused(exporter, response, 400)
        assert response.json() == {"error": "body is not valid JSON"}

    def test_a_body_sent_as_gzip_but_not_labelled_is_not_json(self, exporter: Running) -> None:
        assert_refused(exporter, post(exporter, gzip.compress(OPEN_BODY)), 400)

    def test_several_gzip_members_are_one_body(self, open_exporter: Running) -> None:
        # RFC 1952 2.2: a gzip file is a series of members.
        cut = len(OPEN_BODY) // 2
        body = gzip.compress(OPEN_BODY[:cut]) + gzip.compress(OPEN_BODY[cut:])
        assert post(open_exporter, body, "gzip").json()["accepted"] == 1
        assert events_of(open_exporter, "open", "example.net") == 1

    def test_gzip_streamed_in_small_chunks(self, open_exporter: Running) -> None:
        events = [{"kind": "open", "recipient": f"u{i}@example.net"} for i in range(500)]
        body = gzip.compress(orjson.dumps({"events": events}))

        def chunks() -> Iterator[bytes]:
            for at in range(0, len(body), 7):
                yield body[at : at + 7]

        # No Content-Length: decoding happens while reading.
        response = open_exporter.client.post(
            "/events", content=chunks(), headers=[JSON, ("content-encoding", "gzip")]
        )
        assert response.json()["accepted"] == 500
        assert events_of(open_exporter, "open", "example.net") == 500

    def test_the_limit_applies_to_the_decoded_body(self, clock: FakeClock) -> None:
        event = {"kind": "open", "recipient": "a@limit.example"}
        with running_exporter(clock, max_body_bytes=1024, domain_min_events=1) as exporter:
            at_limit = gzip.compress(padded([event], 1024))
            over = gzip.compress(padded([event], 1025))
            assert len(over) < 200  # small on the wire; only its decoded size is over
            before = events_snapshot(exporter)
            response = post(exporter, over, "gzip")
            assert_refused(exporter, response, 413)
            assert "1024" in response.json()["error"]
            assert events_snapshot(exporter) == before
            assert post(exporter, at_limit, "gzip").json()["accepted"] == 1
            assert events_of(exporter, "open", "limit.example") == 1

    def test_the_limit_applies_to_the_bytes_sent_too(self, clock: FakeClock) -> None:
        # Stored (level 0) deflate is larger than what it holds: a body at the
        # limit once decoded is over it as sent.
        body = gzip.compress(padded([{"kind": "open", "recipient": "a@x.example"}], 1024), 0)
        assert len(body) > 1024
        with running_exporter(clock, max_body_bytes=1024) as exporter:
            before = events_snapshot(exporter)
            assert_refused(exporter, post(exporter, body, "gzip"), 413)
            assert events_snapshot(exporter) == before

    def test_a_gzip_bomb_is_refused_without_being_inflated(self, clock: FakeClock) -> None:
        limit = 1024 * 1024
        # 64 members of 16 MiB of spaces each: 1 GiB once decoded, under the
        # limit as sent. Compressed piecewise, so that building it does not
        # raise this process's peak memory itself.
        deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        spaces = b" " * 2**20
        member = b"".join(deflate.compress(spaces) for _ in range(16)) + deflate.flush()
        bomb = gzip.compress(b'{"events": [') + member * 64
        assert len(bomb) <= limit
        with running_exporter(clock, max_body_bytes=limit) as exporter:
            before = events_snapshot(exporter)
            peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
            response = post(exporter, bomb, "gzip")
            peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert_refused(exporter, response, 413)
            assert events_snapshot(exporter) == before
            # The server runs in this process. Inflating past the limit would
            # have raised its peak memory by tens of MiB for one chunk read
            # from the socket, by 1 GiB for the whole body.
            assert peak_after - peak_before < 16 * 1024
            assert exporter.client.get("/healthz").status_code == 200

    def test_a_retry_is_recognised_however_it_is_encoded(self, open_exporter: Running) -> None:
        fast, small = gzip.compress(OPEN_BODY, 1), gzip.compress(OPEN_BODY, 9, mtime=1)
        assert fast != small
        assert post(open_exporter, OPEN_BODY).json()["accepted"] == 1
        for body in (fast, small):
            assert post(open_exporter, body, "gzip").json() == {
                "accepted": 0,
                "rejected": 0,
                "duplicates": 1,
            }
        assert events_of(open_exporter, "open", "example.net") == 1
        assert open_exporter.value("cloudmailin_duplicate_events_total", kind="open") == 2


def kind_body(spelling: bytes) -> bytes:
    return b'{"events":[{"kind":%s,"recipient":"a@example.net","message_id":"n1"}]}' % spelling


class TestNumericKinds:
    @pytest.mark.parametrize(
        "spelling", [b"10", b"10.0", b"1e1", b"1E1", b"1e+1", b"1.0e1", b"100e-1", b"10.000"]
    )
    def test_an_integral_number_is_its_code(self, open_exporter: Running, spelling: bytes) -> None:
        response = post(open_exporter, kind_body(spelling))
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert events_of(open_exporter, "delivery", "example.net") == 1

    @pytest.mark.parametrize("spelling", [b"-0.0", b"0e0", b"-0"])
    def test_zero_however_spelled_is_registration(
        self, open_exporter: Running, spelling: bytes
    ) -> None:
        assert post(open_exporter, kind_body(spelling)).json()["accepted"] == 1
        assert events_of(open_exporter, "registration", "example.net") == 1
        assert open_exporter.value("cloudmailin_pending_messages") == 1

    @pytest.mark.parametrize("spelling", [b"-10", b"-10.0", b"999.0", b"1e300", b"-1e300"])
    def test_an_unknown_code_is_other(self, open_exporter: Running, spelling: bytes) -> None:
        assert post(open_exporter, kind_body(spelling)).json()["accepted"] == 1
        assert events_of(open_exporter, "other", "example.net") == 1

    @pytest.mark.parametrize(
        "spelling",
        [b"10.5", b"1.05e1", b"10.000000000001", b"1e-1", b"true", b"false", b'"10"', b'"10.0"',
         b"null", b"[10]", b'{"code": 10}'],
    )  # fmt: skip
    def test_anything_else_is_an_invalid_kind(self, exporter: Running, spelling: bytes) -> None:
        before = events_snapshot(exporter)
        response = post(exporter, kind_body(spelling))
        assert response.json() == {"accepted": 0, "rejected": 1, "duplicates": 0}
        assert exporter.value("cloudmailin_rejected_events_total", reason="invalid_kind") == 1
        after = events_snapshot(exporter)
        del after[("cloudmailin_rejected_events_total", ("reason", "invalid_kind"))]
        del before[("cloudmailin_rejected_events_total", ("reason", "invalid_kind"))]
        assert after == before

    def test_a_float_delivery_is_timed_like_an_integer_one(
        self, open_exporter: Running, clock: FakeClock
    ) -> None:
        post(open_exporter, kind_body(b"0.0"))
        clock.advance(30)
        post(open_exporter, kind_body(b"1e1"))
        post(open_exporter, kind_body(b"10"))  # the second copy of the delivery
        name = "cloudmailin_time_to_delivery_seconds"
        assert open_exporter.value(name + "_count", domain="example.net") == 1
        assert open_exporter.value(name + "_sum", domain="example.net") == pytest.approx(30)
        assert open_exporter.value("cloudmailin_duplicate_events_total", kind="delivery") == 1


def recipient_body(recipient: str) -> bytes:
    return orjson.dumps({"events": [{"kind": "open", "recipient": recipient}]})


class TestRecipientSpellings:
    @pytest.mark.parametrize(
        ("recipient", "domain"),
        [
            ('"Jo Example" <jo@Addr.Example>', "addr.example"),  # the example
            ('"Jo Example" <jo@Example.NET>', "example.net"),
            ("<jo@example.net>", "example.net"),
            ("Jo Example <jo@example.net>", "example.net"),
            ('"Example, Jo" <jo@example.net>', "example.net"),
            ('"Jo@home" <jo@example.net>', "example.net"),
            ('"a@b"@example.net', "example.net"),
            ("(Jo) jo@example.net", "example.net"),
            ("jo@example.net (Jo, at example@elsewhere.example)", "example.net"),
            ("team: jo@example.net;", "example.net"),
            ("=?utf-8?q?J=C3=B6?= <jo@example.net>", "example.net"),
            ('"Jö" <jo@Bücher.example>', "xn--bcher-kva.example"),
            ("jo@example.net", "example.net"),
        ],
    )
    def test_rfc_5322_spellings_count_under_the_address_domain(
        self, open_exporter: Running, recipient: str, domain: str
    ) -> None:
        response = post(open_exporter, recipient_body(recipient))
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert events_of(open_exporter, "open", domain) == 1
        assert events_of(open_exporter, "open", "invalid") == 0

    @pytest.mark.parametrize(
        "recipient",
        [
            "<>", "<jo>", "Jo Example", '"Jo" <jo@>', "Jo <@example.net>",
            "a@x.example, b@y.example", "team: a@x.example, b@y.example;", "team:;",
            "Jo <jo@[192.0.2.1]>", "jo@example.net>", "jo@example.net (unclosed",
            "Jo <jo@example.net> trailing", "a@b@example.net", '@b,"',
        ],
    )  # fmt: skip
    def test_spellings_without_one_domain_are_invalid(
        self, open_exporter: Running, recipient: str
    ) -> None:
        response = post(open_exporter, recipient_body(recipient))
        assert response.json() == {"accepted": 1, "rejected": 0, "duplicates": 0}
        assert events_of(open_exporter, "open", "invalid") == 1

    def test_one_domain_one_series_whatever_the_spelling(self, open_exporter: Running) -> None:
        spellings = [
            "jo@example.net>",  # first, so that a careless cache would keep its verdict
            "jo@example.net",
            "<jo@example.net>",
            '"Jo" <jo@EXAMPLE.net>',
            "jo@example.net>",
        ]
        events = [{"kind": "open", "recipient": r} for r in spellings]
        for batch in range(2):  # two different bodies, so the second is no retry
            body = orjson.dumps({"events": events, "batch": batch})
            assert post(open_exporter, body).json()["accepted"] == 5
        assert events_of(open_exporter, "open", "example.net") == 6
        assert events_of(open_exporter, "open", "invalid") == 4
        labels = {
            sample.labels["domain"]
            for family in open_exporter.registry.collect()
            if family.name == "cloudmailin_events"
            for sample in family.samples
        }
        assert labels == {"example.net", "invalid", "other"}

    def test_a_display_name_delivery_is_timed(
        self, open_exporter: Running, clock: FakeClock
    ) -> None:
        rcpt = '"Jo Example" <jo@Addr.Example>'
        post(open_exporter, orjson.dumps({"events": [
            {"kind": "registration", "recipient": rcpt, "message_id": "a1"}]}))  # fmt: skip
        clock.advance(12)
        post(open_exporter, orjson.dumps({"events": [
            {"kind": "delivery", "recipient": rcpt, "message_id": "a1"}]}))  # fmt: skip
        name = "cloudmailin_time_to_delivery_seconds"
        assert open_exporter.value(name + "_count", domain="addr.example") == 1
        assert open_exporter.value(name + "_sum", domain="addr.example") == pytest.approx(12)
