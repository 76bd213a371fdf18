"""The kind catalogue and per-event validation."""

from __future__ import annotations

import pytest

from exporter.events import (
    ALIASES,
    CODES,
    KNOWN_KINDS,
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


def test_unknown_numeric_code_is_other() -> None:
    assert KindCatalogue(5).resolve(999) == "other"


@pytest.mark.parametrize(
    "raw",
    ["", "Delivery", "9lives", "has-dash", "has space", "a" * 33, None, True, 1.5, [], {}, "é"],
)
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
