"""Arbitrary JSON and bytes at POST /events: never a 5xx, never a dead process."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.events import CODES, KNOWN_KINDS
from tests.servers import FakeClock, Running, running_exporter

JSON_HEADERS = {"content-type": "application/json"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
kinds = (
    st.sampled_from([*KNOWN_KINDS, "rate_limited", "brand_new", "BAD", ""])
    # Numeric kinds as integers and as floats, integral or not.
    | st.sampled_from(sorted(CODES)).flatmap(lambda c: st.sampled_from([c, float(c), c + 0.5]))
    | json_values
)
# RFC 5322 spellings of a recipient around an address, well formed or not.
recipients = st.builds(
    lambda address, form: form.format(address),
    st.sampled_from(["u@fuzz.example", "u@Fuzz.Example", '"a@b"@fuzz.example', "u@", "u"]),
    st.sampled_from(
        ["{}", "<{}>", '"Jo Example" <{}>', "Jo <{}", "{}>", "(c) {}", "g: {};", "{}, x@y"]
    ),
)  # fmt: skip
near_valid_events = st.fixed_dictionaries(
    {"kind": kinds, "recipient": recipients | st.text(max_size=30) | json_values},
    optional={
        "message_id": st.text(max_size=20) | json_values,
        "timestamp": st.integers() | st.text(max_size=30) | json_values,
        "created_at": st.text(max_size=30) | st.floats(allow_nan=False),
        "details": json_values,
    },
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"events": st.lists(near_valid_events | json_values, max_size=20)}),
)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Running]:
    with running_exporter(
        FakeClock(), max_domains=20, domain_min_events=1, max_new_kinds=3
    ) as running:
        yield running


@pytest.fixture(scope="module")
def secured() -> Iterator[Running]:
    with running_exporter(FakeClock(), bearer_token="right-token") as running:
        yield running


def check_alive(exporter: Running) -> None:
    assert exporter.client.get("/healthz").status_code == 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads)
def test_any_json_gets_a_2xx_or_4xx(fuzzed: Running, payload: Any) -> None:
    response = fuzzed.client.post(
        "/events", content=json.dumps(payload).encode(), headers=JSON_HEADERS
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        summary = response.json()
        assert sum(summary.values()) == len(payload["events"])
    check_alive(fuzzed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=400),
    content_type=st.sampled_from(["application/json", "x/y"]),
    encoding=st.sampled_from([None, "gzip", "br"]),
)
def test_any_bytes_get_a_4xx(
    fuzzed: Running, body: bytes, content_type: str, encoding: str | None
) -> None:
    headers = {"content-type": content_type}
    if encoding is not None:
        headers["content-encoding"] = encoding
    response = fuzzed.client.post("/events", content=body, headers=headers)
    assert 200 <= response.status_code < 500
    if encoding == "br" and content_type == "application/json":
        assert response.status_code == 415
    check_alive(fuzzed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, cut=st.integers(0, 40), level=st.integers(0, 9))
def test_any_gzip_body_gets_what_its_plain_body_gets(
    fuzzed: Running, payload: Any, cut: int, level: int
) -> None:
    body = json.dumps(payload).encode()
    compressed = gzip.compress(body, level)
    first = fuzzed.client.post("/events", content=body, headers=JSON_HEADERS)
    again = fuzzed.client.post(
        "/events", content=compressed, headers={**JSON_HEADERS, "content-encoding": "gzip"}
    )
    assert again.status_code == first.status_code, again.text
    if first.status_code == 200:
        # The same decoded body: a retry, whose valid events are duplicates.
        before, after = first.json(), again.json()
        assert after["rejected"] == before["rejected"]
        assert after["accepted"] + after["duplicates"] == before["accepted"] + before["duplicates"]
        assert after["accepted"] == 0
    truncated = fuzzed.client.post(
        "/events",
        content=compressed[: max(0, len(compressed) - 1 - cut)],
        headers={**JSON_HEADERS, "content-encoding": "gzip"},
    )
    assert truncated.status_code == 400, truncated.text
    check_alive(fuzzed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
)
def test_any_authorization_header_is_a_clean_401(secured: Running, header: str) -> None:
    try:
        response = secured.client.post(
            "/events", content=b'{"events": []}', headers={**JSON_HEADERS, "authorization": header}
        )
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # not a header a client can send at all
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in header):
        # Not a valid HTTP field value: the HTTP parser refuses the request.
        assert response.status_code in (400, 401)
    else:
        expected = 200 if header.strip() == "Bearer right-token" else 401
        assert response.status_code == expected
    check_alive(secured)


def test_label_values_stay_bounded_after_fuzzing(fuzzed: Running) -> None:
    families = {f.name: f for f in fuzzed.registry.collect()}
    kinds = {s.labels["kind"] for s in families["cloudmailin_events"].samples}
    domains = {s.labels["domain"] for s in families["cloudmailin_events"].samples}
    assert len(kinds - set(KNOWN_KINDS)) <= 4  # three new names and other
    assert len(domains) <= 20 + 2  # the budget, other and invalid
