"""The compiled modules are built, current, and what runs unless the pure
code is asked for; the pure code is what runs when it is."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import native

PROBE = """
import importlib, json, exporter.native as n
print(json.dumps({"files": [importlib.import_module(m).__file__ for m in n.MODULES],
                  "available": n.available()}))
"""


def probe(pure: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure is not None:
        env[native.PURE_ENV] = pure
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_every_extension_in_the_package_is_a_compiled_module() -> None:
    # No extension outside the list (a stale build of a module that lost its
    # .pxd would shadow its .py); the list is read from the .pxd files.
    package = Path(native.__file__).parent
    built = {
        ".".join(("exporter", *path.relative_to(package).parts[:-1], path.name.split(".")[0]))
        for path in package.rglob("*")
        if native._is_extension(str(path))
    }
    assert built == set(native.MODULES)
    # An empty list would pass the line above with nothing built.
    assert built


def test_the_install_built_every_compiled_module() -> None:
    for module in native.MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        assert native._is_extension(spec.origin), spec.origin


@pytest.mark.parametrize("pure", [None, "0"])
def test_compiled_code_runs_by_default(pure: str | None) -> None:
    seen = probe(pure)
    files = seen["files"]
    assert isinstance(files, list)
    assert files
    assert all(str(f).endswith(".so") for f in files), files
    assert seen["available"] is True


def test_pure_code_runs_when_asked() -> None:
    seen = probe("1")
    files = seen["files"]
    assert isinstance(files, list)
    assert files
    assert all(str(f).endswith(".py") for f in files), files
    assert seen["available"] is False


def test_compiled_modules_are_not_older_than_their_source() -> None:
    # An editable install compiles once: a stale build would run old code.
    for module in native.MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        name = module.rpartition(".")[2]
        # A module compiled from its .py is typed by the .pxd beside it.
        for suffix in (".py", ".pxd"):
            source = Path(spec.origin).with_name(name + suffix)
            assert Path(spec.origin).stat().st_mtime >= source.stat().st_mtime, (
                f"{spec.origin} is older than {source}: reinstall (sh scripts/test.sh does)"
            )


@pytest.mark.slow
def test_an_install_without_a_c_compiler_runs_the_pure_code(tmp_path: Path) -> None:
    # The README promises that pip install works where nothing can be
    # compiled; CC=false is a compiler that always fails.
    root = Path(__file__).resolve().parent.parent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "CC": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop(native.PURE_ENV, None)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", str(root / "constraints.txt"),
         str(root)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    seen = subprocess.run(
        [str(venv / "bin" / "python"), "-c", PROBE],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = json.loads(seen)
    assert result["available"] is False
    # Each compiled module ran from its own .py, in the installed package.
    expected = [Path(*module.split(".")).with_suffix(".py").as_posix() for module in native.MODULES]
    assert expected
    files = [Path(f).as_posix() for f in result["files"]]
    assert all(f.endswith("/" + e) for f, e in zip(files, expected, strict=True)), files
