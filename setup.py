"""Builds the compiled parts; everything else is in pyproject.toml.

The record table (`_table.pyx`) and the ingest loop (`ingest.py`, compiled
from the very source that otherwise runs as Python, typed by the `ingest.pxd`
beside it) are built where a C compiler works; where it does not, the
install still succeeds and the pure-Python code runs (see exporter/native.py).
Checked by hand with CC=false, for `pip install .` and `pip install -e .`;
tests/test_native.py installs with CC=false on every run.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [
        Extension("exporter.stores._table", ["exporter/stores/_table.pyx"]),
        Extension("exporter.ingest", ["exporter/ingest.py"]),
    ],
    # Annotations stay Python's: compiled, ingest.py must behave exactly
    # as it does interpreted (Cython would otherwise turn every `float` into
    # a C double and check `list[...]` arguments). The few C types it gets
    # are declared in ingest.pxd, each for a value that is always that type.
    compiler_directives={"language_level": "3", "annotation_typing": False},
)
for extension in extensions:
    # Optional: a compiler failure is a warning and the module stays pure.
    # Set here because cythonize does not carry the flag over.
    extension.optional = True

setup(ext_modules=extensions)
