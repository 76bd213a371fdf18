"""The record table, the one fast version of `timing.decide`, against
`decide` itself (tests/oracle.py): verdicts, pending counts, contents and
creation order, through growth, removals from the middle of probe runs and
reloads. It runs compiled or as Python (CLOUDMAILIN_PURE_PYTHON=1): the tests
run both ways."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.events import KIND_INDEX, KNOWN_KINDS
from exporter.stores.table import ROW, RecordTable, fields, packed
from exporter.timing import DUPLICATE, NO_CLAIM, UNMATCHED, Claim
from tests.oracle import Records

keys = st.integers(0, 2**64 - 1)
few_keys = st.sampled_from([0, 1, 7, 2**63, 2**64 - 1])
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


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_table_follows_decide(steps: list[tuple[object, ...]]) -> None:
    table, model = RecordTable(), Records()
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


def test_many_records_grow_and_survive_removals() -> None:
    # Enough keys to grow the table several times and to make long probe
    # runs, then removals of the oldest half from the middle of them.
    table = RecordTable()
    n = 20_000
    ids = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(n)]
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


def test_load_restores_records_and_pending() -> None:
    source = RecordTable()
    claims = [
        (f"m{i}", "r@x.example", KIND_INDEX["registration"], 1_000_000.0, "registration")
        for i in range(50)
    ]
    ids = [k % 2**64 for k in range(-25, 25)]
    source.apply(claims, 1_000_000.0, ids)
    source.apply(claims[:10], 1_000_001.0, ids[:10])
    copy = RecordTable()
    copy.load(source.items())
    assert copy.items() == source.items()
    assert copy.pending == source.pending == 50
    assert fields(copy.items()[0][1]) == (1_000_000, 1_000_000_000 + 1, 1)


def test_process_local_keys_tell_messages_and_recipients_apart() -> None:
    table = RecordTable()
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


def test_process_local_keys_find_their_records_through_growth() -> None:
    # Half of Python's hashes are negative: their keys must come out the same
    # 64 unsigned bits each time, through the table's growth, compiled or not.
    table = RecordTable()
    n = 5_000
    claims: list[Claim] = [
        (f"m{i}", f"r{i % 7}@x.example", KIND_INDEX["registration"], 1_000_000.0, "registration")
        for i in range(n)
    ]
    table.apply(claims, 1_000_000.0)
    keys = [key for key, _ in table.items()]
    assert len(set(keys)) == len(table) == n
    assert all(0 <= key < 2**64 for key in keys)
    assert any(key >= 2**63 for key in keys)
    delivery = [(c[0], c[1], KIND_INDEX["delivery"], 1_000_002.0, "delivery") for c in claims]
    assert table.apply(delivery, 1_000_003.0) == [2.0] * n
    assert table.pending == 0
