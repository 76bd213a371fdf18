"""The kind catalogue and per-event validation."""

from __future__ import annotations

import logging

import orjson
import pytest

from exporter.events import (
    ALIASES,
    CODES,
    KNOWN_KINDS,
    MAX_LOGGED_CODES,
    ONCE_PER_MESSAGE,
    TERMINAL,
    Event,
    KindCatalogue,
    parse_event,
    parse_time,
)

DESIGN_KINDS = {
    "registration", "dispatch", "delivery", "rate_limit", "bounce", "soft_bounce",
    "dispatch_bounce", "dispatch_soft_bounce", "retries_exhausted", "error", "suppressed",
    "blocked", "spamd", "open", "read", "click", "complaint", "auto_reply", "bounce_reply",
    "process",
}  # fmt: skip
DESIGN_CODES = {
    0: "registration", 1: "dispatch", 3: "rate_limit", 5: "dispatch_bounce",
    6: "dispatch_soft_bounce", 10: "delivery", 11: "bounce", 12: "soft_bounce", 20: "open",
    21: "click", 22: "read", 30: "complaint", 40: "retries_exhausted", 50: "blocked",
    60: "auto_reply", 1000: "process", 1001: "spamd",
}  # fmt: skip


def test_catalogue_matches_the_design() -> None:
    assert set(KNOWN_KINDS) == DESIGN_KINDS
    assert len(KNOWN_KINDS) == len(DESIGN_KINDS)
    assert CODES == DESIGN_CODES
    assert ALIASES == {"rate_limited": "rate_limit"}
    assert {
        "delivery", "bounce", "dispatch_bounce", "retries_exhausted", "suppressed", "blocked",
        "spamd",
    } == TERMINAL  # fmt: skip
    assert TERMINAL | {"registration", "dispatch"} == ONCE_PER_MESSAGE


@pytest.mark.parametrize("kind", sorted(DESIGN_KINDS))
def test_every_known_name_resolves_to_itself(kind: str) -> None:
    assert KindCatalogue(0).resolve(kind) == kind


@pytest.mark.parametrize(("code", "kind"), sorted(DESIGN_CODES.items()))
def test_numeric_codes(code: int, kind: str) -> None:
    assert KindCatalogue(0).resolve(code) == kind


def test_old_name_counts_as_the_new_one() -> None:
    assert KindCatalogue(0).resolve("rate_limited") == "rate_limit"


def test_new_well_formed_kinds_are_bounded() -> None:
    kinds = KindCatalogue(max_new_kinds=2)
    assert kinds.resolve("first_new") == "first_new"
    assert kinds.resolve("second_new") == "second_new"
    assert kinds.resolve("third_new") == "other"
    # Earlier admissions stay; the verdict for the overflow one sticks.
    assert kinds.resolve("first_new") == "first_new"
    assert kinds.resolve("third_new") == "other"
    assert kinds.new_kinds == {"first_new", "second_new"}


@pytest.mark.parametrize("code", [999, -1, -10, 2**64 - 1, 10**300])
def test_unknown_numeric_code_is_other(code: int) -> None:
    assert KindCatalogue(5).resolve(code) == "other"


@pytest.mark.parametrize(("code", "kind"), sorted(DESIGN_CODES.items()))
def test_an_integral_float_is_its_code(code: int, kind: str) -> None:
    kinds = KindCatalogue(0)
    assert kinds.resolve(float(code)) == kind
    assert kinds.resolve(float(f"{code}e0")) == kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("10.0", "delivery"), ("1e1", "delivery"), ("1E+1", "delivery"), ("100e-1", "delivery"),
        ("10.000", "delivery"), ("-0.0", "registration"), ("0e5", "registration"),
        ("1.001e3", "spamd"),
    ],
)  # fmt: skip
def test_json_spellings_of_codes(text: str, kind: str) -> None:
    assert KindCatalogue(0).resolve(orjson.loads(text)) == kind


@pytest.mark.parametrize("raw", [-10.0, 999.0, 1e300, -1e300, 2.0**64])
def test_unknown_integral_floats_are_other(raw: float) -> None:
    assert KindCatalogue(0).resolve(raw) == "other"


def test_unknown_codes_are_logged_once_each_and_boundedly(caplog: pytest.LogCaptureFixture) -> None:
    kinds = KindCatalogue(0)
    with caplog.at_level(logging.WARNING, logger="exporter.events"):
        for _ in range(3):
            kinds.resolve(7)
            kinds.resolve(7.0)
        assert len(caplog.records) == 1
        for code in range(10_000, 10_000 + 5 * MAX_LOGGED_CODES):
            assert kinds.resolve(code) == "other"
    assert len(caplog.records) == MAX_LOGGED_CODES
    # Unknown codes never become names: the string "#7" stays malformed.
    assert kinds.resolve("#7") is None
    assert len(kinds.resolved) == len(KNOWN_KINDS) + len(ALIASES)


@pytest.mark.parametrize(
    "raw",
    [
        "", "Delivery", "9lives", "has-dash", "has space", "a" * 33, None, True, False, 1.5,
        10.5, -0.5, 1e-300, 10.000000000000002, float("inf"), float("-inf"), float("nan"),
        "10", "10.0", "#10", [], [10], {}, "é",
    ],
)  # fmt: skip
def test_malformed_kinds_are_refused(raw: object) -> None:
    kinds = KindCatalogue(5)
    assert kinds.resolve(raw) is None
    assert kinds.new_kinds == frozenset()


def test_longest_well_formed_kind_is_admitted() -> None:
    assert KindCatalogue(1).resolve("a" * 32) == "a" * 32


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-27T10:00:00Z", 1_795_773_600.0),
        ("2026-11-27T10:00:00+00:00", 1_795_773_600.0),
        ("2026-11-27T11:00:00+01:00", 1_795_773_600.0),
        ("2026-11-27T10:00:00.250Z", 1_795_773_600.25),
        (1_795_773_600, 1_795_773_600.0),
        (1_795_773_600.5, 1_795_773_600.5),
    ],
)
def test_timestamps(raw: object, expected: float) -> None:
    assert parse_time(raw) == expected


@pytest.mark.parametrize(
    "raw", ["yesterday", "2026-11-27T10:00:00", -1, 1e300, True, [], "", "2026-13-01T00:00:00Z"]
)
def test_bad_timestamps(raw: object) -> None:
    with pytest.raises((ValueError, OverflowError)):
        parse_time(raw)


def test_parse_valid_event_ignores_extra_fields_and_any_details() -> None:
    event = parse_event(
        {
            "kind": "delivery",
            "recipient": "a@example.com",
            "message_id": "m-1",
            "details": {"nested": [1, {"deep": None}]},
            "something_new": 42,
            "created_at": "2026-11-27T10:00:00Z",
        },
        KindCatalogue(0),
    )
    assert event == Event("delivery", "a@example.com", "m-1", 1_795_773_600.0)


def test_parse_event_takes_a_float_code() -> None:
    raw = {"kind": 10.0, "recipient": "a@example.net", "message_id": "n1"}
    assert parse_event(raw, KindCatalogue(0)) == Event("delivery", "a@example.net", "n1", None)


def test_timestamp_wins_over_created_at() -> None:
    event = parse_event(
        {"kind": "open", "recipient": "a@b.c", "timestamp": 10, "created_at": 20},
        KindCatalogue(0),
    )
    assert isinstance(event, Event)
    assert event.at == 10.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([], "not_an_object"),
        ("delivery", "not_an_object"),
        ({"recipient": "a@b.c"}, "invalid_kind"),
        ({"kind": "NOPE", "recipient": "a@b.c"}, "invalid_kind"),
        ({"kind": 10.5, "recipient": "a@b.c"}, "invalid_kind"),
        ({"kind": True, "recipient": "a@b.c"}, "invalid_kind"),
        ({"kind": "10", "recipient": "a@b.c"}, "invalid_kind"),
        ({"kind": "delivery"}, "invalid_recipient"),
        ({"kind": "delivery", "recipient": 7}, "invalid_recipient"),
        ({"kind": "delivery", "recipient": ""}, "invalid_recipient"),
        ({"kind": "delivery", "recipient": "a@" + "b" * 400}, "invalid_recipient"),
        ({"kind": "delivery", "recipient": "a@b.c", "message_id": 5}, "invalid_message_id"),
        ({"kind": "delivery", "recipient": "a@b.c", "message_id": ""}, "invalid_message_id"),
        ({"kind": "delivery", "recipient": "a@b.c", "message_id": "x" * 256}, "invalid_message_id"),
        ({"kind": "delivery", "recipient": "a@b.c", "timestamp": "soon"}, "invalid_timestamp"),
        ({"kind": "delivery", "recipient": "a@b.c", "created_at": {}}, "invalid_timestamp"),
    ],
)
def test_rejections_name_their_reason(raw: object, reason: str) -> None:
    assert parse_event(raw, KindCatalogue(0)) == reason
