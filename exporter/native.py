"""Which parts of the exporter run compiled.

The installed package carries the record table compiled from
`stores/_table.pyx` (Cython, built by `pip install` when a C compiler is
present); where it could not be built, the pure-Python twin in
`stores/table.py` runs instead, with the same results, more slowly.
CLOUDMAILIN_PURE_PYTHON=1 asks for the pure code even when the compiled
code is there: the tests run both ways.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Final

PURE_ENV: Final = "CLOUDMAILIN_PURE_PYTHON"
MODULES: Final = ("exporter.stores._table",)


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def compiled(module: str) -> bool:
    """Whether `module` (one of MODULES) is built and wanted."""
    return not pure_requested() and importlib.util.find_spec(module) is not None


def available() -> bool:
    """Whether every compiled module is in use."""
    return all(compiled(module) for module in MODULES)
