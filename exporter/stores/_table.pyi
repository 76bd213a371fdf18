# The compiled table (_table.pyx) offers the interface both tables share.
from collections.abc import Callable, Sequence

from exporter.stores.table import Table
from exporter.timing import Claim

RecordTable: Callable[[], Table]

def message_keys(claims: Sequence[Claim]) -> list[int]: ...
def body_digest(body: bytes) -> bytes: ...
