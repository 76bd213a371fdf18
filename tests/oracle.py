"""The rules in their readable form, for the differential tests of the fast
code: `timing.decide` on a dict of `Record`s, kept in creation order."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from exporter.stores.table import packed
from exporter.timing import NO_CLAIM, NOTHING, Claim, Record, Verdict, decide


class Records:
    def __init__(self) -> None:
        self.records: dict[Hashable, Record] = {}

    def apply(self, keys: Sequence[Hashable], claims: Sequence[Claim], now: float) -> list[Verdict]:
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

    def items(self) -> list[tuple[Hashable, int]]:
        """As the table gives them: (key, packed record), oldest first."""
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
