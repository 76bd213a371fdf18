"""Recipient domains as label values, under the cardinality budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.domains import CANDIDATE_CAP, NOT_BARE, DomainGuard, address_domain, normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", ".", "a..b", "exa mple.com", "a" * 64 + ".com", "xn--zz.example", "b" * 254]
)
def test_unusable_domains(raw: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by cause
        normalise(raw)


def test_invalid_addresses_are_labelled_invalid() -> None:
    guard = DomainGuard(10, (), 1)
    assert guard.label("no-at-sign") == "invalid"
    assert guard.label("user@") == "invalid"
    assert guard.label("user@exa mple.com") == "invalid"
    assert guard.overflow_events == 0


def test_first_sight_admission_and_budget() -> None:
    guard = DomainGuard(max_domains=2, allowlist=(), min_events=1)
    assert guard.label("a@one.example") == "one.example"
    assert guard.label("b@TWO.example") == "two.example"
    assert guard.label("c@three.example") == "other"
    assert guard.label("d@three.example") == "other"
    assert guard.overflow_events == 2
    assert guard.label("e@one.example") == "one.example"
    assert guard.labels == {"one.example", "two.example"}


def test_allowlist_is_always_admitted_and_outside_the_budget() -> None:
    guard = DomainGuard(max_domains=1, allowlist=("VIP.example",), min_events=3)
    assert guard.label("a@filler.example") == "other"
    assert guard.label("a@vip.example") == "vip.example"
    for _ in range(2):
        guard.label("b@filler.example")
    assert guard.labels == {"vip.example", "filler.example"}
    assert guard.label("a@late.example") == "other"
    assert guard.label("a@vip.example") == "vip.example"


def test_domain_earns_its_series_from_the_nth_event() -> None:
    guard = DomainGuard(max_domains=10, allowlist=(), min_events=3)
    assert [guard.label(f"u{i}@gmail.com") for i in range(4)] == [
        "other",
        "other",
        "gmail.com",
        "gmail.com",
    ]
    # Folding below the threshold is not overflow: the budget is not full.
    assert guard.overflow_events == 0


def test_one_off_domains_never_use_the_budget() -> None:
    guard = DomainGuard(max_domains=1, allowlist=(), min_events=2)
    for i in range(CANDIDATE_CAP * 2):
        assert guard.label(f"x@oneoff{i}.example") == "other"
    assert guard.labels == frozenset()
    guard.label("a@steady.example")
    assert guard.label("b@steady.example") == "steady.example"


def test_label_values_stay_bounded_under_a_flood() -> None:
    guard = DomainGuard(max_domains=5, allowlist=(), min_events=1)
    labels = {guard.label(f"x@d{i}.example") for i in range(10_000)}
    assert len(labels) == 6  # five admitted plus other
    assert guard.overflow_events == 10_000 - 5


def test_an_address_without_at_does_not_shadow_a_domain() -> None:
    guard = DomainGuard(10, (), 1)
    assert guard.label("example.com") == "invalid"
    assert guard.label("user@example.com") == "example.com"
    assert guard.label("example.com") == "invalid"


@pytest.mark.parametrize(
    ("recipient", "domain"),
    [
        ('"Jo Example" <jo@Addr.Example>', "addr.example"),
        ("<jo@example.net>", "example.net"),
        ("Jo Example <jo@Example.NET>", "example.net"),
        ('"Example, Jo" <jo@example.net>', "example.net"),
        ('"Jo@home" <jo@example.net>', "example.net"),
        ('"a@b"@example.net', "example.net"),
        ("(Jo) jo@example.net", "example.net"),
        ("jo@example.net (Jo at example@elsewhere.example)", "example.net"),
        ("team: jo@example.net;", "example.net"),
        ("<@relay.example:jo@example.net>", "example.net"),
        ("=?utf-8?q?J=C3=B6?= <jo@example.net>", "example.net"),
        ("Jö <jo@example.net>", "example.net"),
        ('"Jo" <jo@bücher.example>', "xn--bcher-kva.example"),
        ("<jo@example.net>\t", "example.net"),
        ("jo@example.net ", "example.net"),
    ],
)
def test_rfc_5322_spellings_count_under_their_domain(recipient: str, domain: str) -> None:
    assert DomainGuard(10, (), 1).label(recipient) == domain


@pytest.mark.parametrize(
    "recipient",
    [
        "<>",
        "<jo>",
        "Jo <jo>",
        '"Jo" <jo@>',
        "Jo <@example.net>",
        "a@x.example, b@y.example",
        "team: a@x.example, b@y.example;",
        "team:;",
        "Jo <jo@[192.0.2.1]>",
        "jo@[IPv6:::1]",
        "jo@example.net>",
        "jo@example.net (unclosed",
        "Jo <jo@example.net> trailing",
        "jo@exa mple.net",
        "a@b@example.net",
        "jo@example.net\n",
        "Jo <jo@xn--zz.example>",
        # Each of these makes the stdlib parser raise (IndexError,
        # AttributeError, TypeError, UnboundLocalError on Python 3.11).
        '@b,"',
        "\\@[",
        "\t.@]",
        "a=x@[ ",
        "a@b, jo@",
    ],
)
def test_spellings_without_one_usable_domain_are_invalid(recipient: str) -> None:
    guard = DomainGuard(10, (), 1)
    assert guard.label(recipient) == "invalid"
    assert guard.labels == frozenset()


def test_cache_keys_are_bare_domain_text() -> None:
    """The ingest loop looks up the text after the first @: no other spelling
    may find a cached verdict that way."""
    guard = DomainGuard(10, (), 1)
    for recipient in ("jo@example.net>", "<jo@example.net>", '"J" <j@x.example>', "a@b@c.example"):
        guard.label(recipient)
    assert set(guard.decided) == {"example.net", "x.example"}
    assert all(NOT_BARE.search(key) is None for key in guard.decided)


@pytest.mark.parametrize(
    "order",
    [
        ("jo@example.net>", "jo@example.net", "<jo@example.net>"),
        ("<jo@example.net>", "jo@example.net>", "jo@example.net"),
        ("jo@example.net", "<jo@example.net>", "jo@example.net>"),
    ],
)
def test_a_verdict_does_not_depend_on_what_came_first(order: tuple[str, ...]) -> None:
    guard = DomainGuard(10, (), 1)
    expected = {
        "jo@example.net": "example.net",
        "<jo@example.net>": "example.net",
        "jo@example.net>": "invalid",
    }
    for _ in range(2):
        assert {recipient: guard.label(recipient) for recipient in order} == expected


def test_every_spelling_of_a_domain_counts_towards_its_admission() -> None:
    guard = DomainGuard(max_domains=10, allowlist=(), min_events=3)
    assert guard.label('"A" <a@x.example>') == "other"
    assert guard.label("<b@X.example>") == "other"
    assert guard.label("c@x.example") == "x.example"
    assert guard.label('"A" <a@x.example>') == "x.example"


def test_address_domain_keeps_the_text_as_written() -> None:
    assert address_domain("jo@Example.NET") == "Example.NET"
    assert address_domain('"Jo" <jo@Example.NET>') == "Example.NET"
    assert address_domain("no-at-sign") is None
    assert address_domain("Jo <jo>") is None


@settings(max_examples=300, deadline=None)
@given(
    local=st.from_regex(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}(\.[a-z0-9_-]{1,8}){0,2}", fullmatch=True)
    | st.sampled_from(['"a@b"', '"Jo Example"', '"a\\"b"']),
    domain=st.sampled_from(["example.net", "Example.NET", "bücher.example", "a-b.c.example"]),
    name=st.sampled_from(
        ["", "Jo", '"Jo Example"', '"Example, Jo"', '"Jo@home"', "=?utf-8?q?J=C3=B6?="]
    ),
    comment=st.sampled_from(["", " (Jo)", " (a@b.example)"]),
)  # fmt: skip
def test_every_spelling_of_an_address_has_the_bare_address_label(
    local: str, domain: str, name: str, comment: str
) -> None:
    address = f"{local}@{domain}"
    spellings = [f"{name} <{address}>{comment}", f"<{address}>", f"{address}{comment}"]
    guard = DomainGuard(10, (), 1)
    assert {guard.label(spelling) for spelling in spellings} == {guard.label(address)}
    assert guard.label(address) != "invalid"
