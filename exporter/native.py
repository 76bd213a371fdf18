"""Which parts of the exporter run compiled.

A module is compiled when a `.pxd` file sits beside its `.py`: `pip install`
then compiles that very `.py` with Cython where a C compiler works, typed by
the `.pxd` (see setup.py), and the extension is imported in its place. That
is the one list of compiled modules; setup.py, scripts/env.sh, the
Dockerfile's check and the tests all read it from the files. Where the
modules could not be built, the same code runs as Python, with the same
results, more slowly. CLOUDMAILIN_PURE_PYTHON=1 asks for the Python even when
the compiled code is there: the tests run both ways.
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
_PACKAGE: Final = Path(__file__).resolve().parent


def _compiled_modules() -> tuple[str, ...]:
    """Every module of the package with a .pxd beside its .py, by name."""
    return tuple(
        sorted(
            ".".join(("exporter", *pxd.relative_to(_PACKAGE).with_suffix("").parts))
            for pxd in _PACKAGE.rglob("*.pxd")
            if pxd.with_suffix(".py").exists()
        )
    )


MODULES: Final = _compiled_modules()


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
    """Whether every compiled module is in use (False when none is declared:
    a package that lost its .pxd files must not pass the image's build check)."""
    return bool(MODULES) and all(compiled(module) for module in MODULES)


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the modules in MODULES as their .py files, past a built extension."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not _is_extension(spec.origin):
            return None
        assert spec.origin is not None
        source = Path(spec.origin).parent / (fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_source() -> None:
    """Import the MODULES from their .py files (before they are imported)."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
