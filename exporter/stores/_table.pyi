# The compiled table (_table.pyx) offers the interface both tables share.
from collections.abc import Callable

from exporter.stores.table import Table

RecordTable: Callable[[], Table]
