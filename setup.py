"""Builds the compiled parts; everything else is in pyproject.toml.

The record table (`_table.pyx`) and the ingest loop (`ingest.py`, compiled
from the very source that otherwise runs as Python) are built where a C
compiler works; where it does not, the install still succeeds and the
pure-Python code runs (see exporter/native.py). Checked by hand with CC=false,
for `pip install .` and `pip install -e .`.
"""

from pathlib import Path
from typing import Any

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildWherePossible(build_ext):
    """Compiles each module where a C compiler works; where one fails, the
    package installs without it and its pure-Python code runs. (Extension's
    own optional flag does not survive cythonize.)"""

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # any compiler failure means: run pure
            self.warn(f"{ext.name} not compiled ({exc}); its pure-Python code will run")

    def copy_extensions_to_source(self) -> None:
        # An editable install copies the built modules into the tree; skip those
        # that were not built.
        built = [ext for ext in self.extensions if Path(self.get_ext_fullpath(ext.name)).exists()]
        self.extensions, every = built, self.extensions
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every


setup(
    cmdclass={"build_ext": BuildWherePossible},
    ext_modules=cythonize(
        [
            Extension("exporter.stores._table", ["exporter/stores/_table.pyx"]),
            Extension("exporter.ingest", ["exporter/ingest.py"]),
        ],
        # Annotations stay Python's: compiled, ingest.py must behave exactly
        # as it does interpreted (Cython would otherwise turn `float` into C
        # double and check `list[...]` arguments).
        compiler_directives={"language_level": "3", "annotation_typing": False},
    ),
)
