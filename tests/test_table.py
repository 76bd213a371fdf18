"""Both record tables, the compiled one and its pure-Python twin, against a
model built from `decide`: verdicts, pending counts, contents and creation
order, through growth, removals from the middle of probe runs and reloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.events import KIND_INDEX, KNOWN_KINDS
from exporter.stores._table import RecordTable as CompiledTable
from exporter.stores._table import body_digest as compiled_body_digest
from exporter.stores._table import message_keys as compiled_message_keys
from exporter.stores.base import body_digest
from exporter.stores.table import (
    ROW,
    PureRecordTable,
    Table,
    fields,
    packed,
    pure_message_keys,
)
from exporter.timing import DUPLICATE, NO_CLAIM, NOTHING, UNMATCHED, Claim, Record, Verdict, decide

TABLES = [pytest.param(PureRecordTable, id="pure"), pytest.param(CompiledTable, id="compiled")]
TableClass = Callable[[], Table]


@dataclass
class Model:
    """The rules in their readable form, in creation order."""

    records: dict[int, Record] = field(default_factory=dict)

    def apply(self, keys: list[int], claims: list[Claim], now: float) -> list[Verdict]:
        out = []
        for key, claim in zip(keys, claims, strict=True):
            if claim[2] == NO_CLAIM:
                out.append(NOTHING)
                continue
            record = self.records.setdefault(key, Record(created=int(now)))
            out.append(decide(record, claim))
        return out

    def drop_oldest(self, count: int, before: float | None) -> tuple[int, int]:
        pending, newest = 0, -1
        for key in list(self.records)[:count]:
            record = self.records[key]
            if before is not None and record.created >= before:
                break
            del self.records[key]
            pending += record.pending
            newest = int(record.created)
        return pending, newest

    @property
    def pending(self) -> int:
        return sum(r.pending for r in self.records.values())

    def items(self) -> list[tuple[int, int]]:
        return [
            (
                key,
                packed(
                    int(r.created),
                    0 if r.registered_at is None else int(r.registered_at * 1000) + 1,
                    r.seen,
                ),
            )
            for key, r in self.records.items()
        ]


keys = st.integers(-(2**63), 2**63 - 1)
few_keys = st.sampled_from([-(2**63), -1, 0, 1, 7, 2**63 - 1])
claim_parts = st.tuples(
    st.one_of(keys, few_keys),
    st.sampled_from([NO_CLAIM, *range(len(KNOWN_KINDS))]),
    # Eighths of a second: exact in binary and in milliseconds.
    st.integers(0, 40_000).map(lambda k: 1_000_000 + k / 8),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.lists(claim_parts, max_size=30)),
        st.tuples(
            st.just("drop"), st.integers(0, 40), st.none() | st.integers(1_000_000, 1_000_010)
        ),
    ),
    max_size=12,
)


def as_claims(parts: list[tuple[int, int, float]]) -> tuple[list[int], list[Claim]]:
    return [k for k, _, _ in parts], [
        (f"m{k}", "r@x.example", i, at, KNOWN_KINDS[i] if i >= 0 else "other") for k, i, at in parts
    ]


@pytest.mark.parametrize("table_class", TABLES)
@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_table_follows_decide(table_class: TableClass, steps: list[tuple[object, ...]]) -> None:
    table, model = table_class(), Model()
    now = 1_000_000.0
    for step in steps:
        now += 1
        if step[0] == "apply":
            ids, claims = as_claims(step[1])  # type: ignore[arg-type]
            touched = bytearray()
            verdicts = table.apply(claims, now, ids, touched)
            assert verdicts == model.apply(ids, claims, now)
            # The rows logged for a durable store: one per record written,
            # the last of each key its state now.
            logged = {
                key: packed(created, registered, seen)
                for key, registered, created, seen in ROW.iter_unpack(touched)
            }
            written = sum(
                1
                for c, v in zip(claims, verdicts, strict=True)
                if c[2] != NO_CLAIM and v != DUPLICATE
            )
            assert len(touched) == written * ROW.size
            assert logged == {key: value for key, value in table.items() if key in logged}
        else:
            count, before = step[1], step[2]
            assert table.drop_oldest(count, before) == model.drop_oldest(count, before)  # type: ignore[arg-type]
        assert table.pending == model.pending
        assert len(table) == len(model.records)
    assert table.items() == model.items()


@pytest.mark.parametrize("table_class", TABLES)
def test_many_records_grow_and_survive_removals(table_class: TableClass) -> None:
    # Enough keys to grow the compiled table several times and to make long
    # probe runs, then removals of the oldest half from the middle of them.
    table = table_class()
    n = 20_000
    ids = [(i * 0x9E3779B97F4A7C15) % 2**64 - 2**63 for i in range(n)]
    registration = KIND_INDEX["registration"]
    claims = [(f"m{i}", "r@x.example", registration, 1_000_000.0, "registration") for i in range(n)]
    touched = bytearray()
    table.apply(claims, 1_000_000.0, ids, touched)
    assert len(table) == n == table.pending
    assert [row[0] for row in ROW.iter_unpack(touched)] == ids
    assert table.drop_oldest(n // 2) == (n // 2, 1_000_000)
    delivery = [(c[0], c[1], KIND_INDEX["delivery"], 1_000_004.0, "delivery") for c in claims]
    verdicts = table.apply(delivery, 1_000_005.0, ids)
    # The dropped half is unknown now; the kept half is found and timed.
    assert verdicts[: n // 2] == [UNMATCHED] * (n // 2)
    assert verdicts[n // 2 :] == [4.0] * (n - n // 2)
    assert table.pending == 0
    assert [key for key, _ in table.items()] == ids[n // 2 :] + ids[: n // 2]


@pytest.mark.parametrize("table_class", TABLES)
def test_load_restores_records_and_pending(table_class: TableClass) -> None:
    source = table_class()
    claims = [
        (f"m{i}", "r@x.example", KIND_INDEX["registration"], 1_000_000.0, "registration")
        for i in range(50)
    ]
    ids = list(range(-25, 25))
    source.apply(claims, 1_000_000.0, ids)
    source.apply(claims[:10], 1_000_001.0, ids[:10])
    copy = table_class()
    copy.load(source.items())
    assert copy.items() == source.items()
    assert copy.pending == source.pending == 50
    assert fields(copy.items()[0][1]) == (1_000_000, 1_000_000_000 + 1, 1)


@pytest.mark.parametrize("table_class", TABLES)
def test_process_local_keys_tell_messages_and_recipients_apart(table_class: TableClass) -> None:
    table = table_class()
    index = KIND_INDEX["registration"]
    claims: list[Claim] = [
        ("m1", "a@x.example", index, 1.0, "registration"),
        ("m1", "b@x.example", index, 1.0, "registration"),
        ("m2", "a@x.example", index, 1.0, "registration"),
        ("m1", "a@x.example", index, 2.0, "registration"),
    ]
    verdicts = table.apply(claims, 10.0)
    assert len(table) == 3
    assert verdicts[3] != verdicts[0]  # the repeat is a duplicate


@settings(max_examples=500, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            # Any text, short and past one 128-byte block and past the stack buffer.
            st.text(max_size=300) | st.text(min_size=1000, max_size=1200),
            st.text(max_size=40),
            st.sampled_from([NO_CLAIM, 0, 5]),
        ),
        max_size=8,
    )
)
def test_compiled_message_keys_are_blake2b_like_the_pure_ones(
    parts: list[tuple[str, str, int]],
) -> None:
    claims: list[Claim] = [(m, r, i, 0.0, "") for m, r, i in parts]
    try:
        expected = pure_message_keys(claims)
    except UnicodeEncodeError:  # lone surrogates: JSON parsing never yields them
        return
    assert compiled_message_keys(claims) == expected
    assert [k == 0 for k in expected] == [i == NO_CLAIM for _, _, i in parts] or 0 in expected


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=600)
    # Around the 128-byte block: the last block is compressed differently.
    | st.integers(1, 3).flatmap(lambda k: st.binary(min_size=128 * k - 1, max_size=128 * k + 1))
    | st.binary(min_size=20_000, max_size=40_000)
)
def test_compiled_body_digest_is_hashlibs(body: bytes) -> None:
    assert compiled_body_digest(body) == body_digest(body)
