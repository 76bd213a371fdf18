"""Builds the compiled record table; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler), the
install still succeeds and the pure-Python table runs (see exporter/native.py).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("exporter.stores._table", ["exporter/stores/_table.pyx"], optional=True)],
        compiler_directives={"language_level": "3"},
    )
)
