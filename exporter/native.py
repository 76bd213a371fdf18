"""Which parts of the exporter run compiled.

`pip install` compiles two modules with Cython when a C compiler is present
(see setup.py): the record table (`stores/_table.pyx`, whose pure-Python twin
is `stores/table.py`) and the ingest loop (`ingest.py` itself, compiled from
the same source that otherwise runs as Python, with the C types declared in
`ingest.pxd`). Where they could not be
built, the pure-Python code runs, with the same results, more slowly.
CLOUDMAILIN_PURE_PYTHON=1 asks for the pure code even when the compiled code
is there: the tests run both ways.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

PURE_ENV: Final = "CLOUDMAILIN_PURE_PYTHON"
TABLE: Final = "exporter.stores._table"
# Modules compiled from their own .py source.
FROM_SOURCE: Final = ("exporter.ingest",)
MODULES: Final = (TABLE, *FROM_SOURCE)


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _is_extension(origin: str | None) -> bool:
    return origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled(module: str) -> bool:
    """Whether `module` (one of MODULES) is built and wanted."""
    if pure_requested():
        return False
    spec = importlib.util.find_spec(module)
    return spec is not None and _is_extension(spec.origin)


def available() -> bool:
    """Whether every compiled module is in use."""
    return all(compiled(module) for module in MODULES)


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the modules in FROM_SOURCE as their .py files, past a built extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in FROM_SOURCE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not _is_extension(spec.origin):
            return None
        assert spec.origin is not None
        source = Path(spec.origin).parent / (fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_source() -> None:
    """Import FROM_SOURCE modules from their .py files (before they are imported)."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
