"""Builds the compiled parts; everything else is in pyproject.toml.

Every module with a `.pxd` beside its `.py` (exporter/native.py says why) is
compiled with Cython from that very `.py`, typed by the `.pxd`, where a C
compiler works; where it does not, the install still succeeds and the same
code runs as Python. tests/test_native.py installs with CC=false on every
run.
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

sources = sorted(
    pxd.with_suffix(".py")
    for pxd in Path("exporter").rglob("*.pxd")
    if pxd.with_suffix(".py").exists()
)
extensions = cythonize(
    [Extension(".".join(source.with_suffix("").parts), [str(source)]) for source in sources],
    # Annotations stay Python's: compiled, a module must behave exactly as
    # it does interpreted (Cython would otherwise turn every `float` into a
    # C double and check `list[...]` arguments). The C types it gets are
    # declared in its .pxd, each for a value that is always that type.
    compiler_directives={"language_level": "3", "annotation_typing": False},
)
for extension in extensions:
    # Optional: a compiler failure is a warning and the module stays pure.
    # Set here because cythonize does not carry the flag over.
    extension.optional = True

setup(ext_modules=extensions)
