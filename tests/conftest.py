from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import FakeClock, Running, running_exporter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def exporter(clock: FakeClock) -> Iterator[Running]:
    """An open exporter (no credentials) with the default settings and a fake clock."""
    with running_exporter(clock) as running:
        yield running
