"""Builds the compiled parts; everything else is in pyproject.toml.

The record table (`_table.pyx`) and the ingest loop (`ingest.py`, compiled
from the very source that otherwise runs as Python) are optional extensions:
where they cannot be compiled (no C compiler), the install still succeeds and
the pure-Python code runs (see exporter/native.py).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("exporter.stores._table", ["exporter/stores/_table.pyx"], optional=True),
            Extension("exporter.ingest", ["exporter/ingest.py"], optional=True),
        ],
        # Annotations stay Python's: compiled, ingest.py must behave exactly
        # as it does interpreted (Cython would otherwise turn `float` into C
        # double and check `list[...]` arguments).
        compiler_directives={"language_level": "3", "annotation_typing": False},
    )
)
