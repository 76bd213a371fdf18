# Shared by run.sh and test.sh: a virtualenv in .venv with the pinned packages.
# Usage: . scripts/env.sh; ensure_venv '.[test]'
set -eu
ROOT="${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# build_inputs: what an install is built from: pyproject.toml, constraints.txt,
# setup.py, and each compiled module (a .pxd and the .py beside it; see
# exporter/native.py).
build_inputs() {
  echo "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/setup.py"
  for pxd in $(find "$ROOT/exporter" -name '*.pxd'); do
    echo "$pxd" "${pxd%.pxd}.py"
  done
}

# ensure_venv SPEC STAMP: install SPEC (".", "-e .[test]") into .venv once per
# change of a build input (an editable install builds the extensions once;
# they must be rebuilt).
ensure_venv() {
  spec="$1"; stamp="$VENV/.$2"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
  fi
  stale=""
  [ -f "$stamp" ] || stale="yes"
  for input in $(build_inputs); do
    if [ "$input" -nt "$stamp" ]; then stale="yes"; fi
  done
  if [ -n "$stale" ]; then
    # Extensions built before are rebuilt; one whose module is no longer
    # compiled (it lost its .pxd) would otherwise shadow the .py in place.
    find "$ROOT/exporter" -name '*.so' -delete
    # shellcheck disable=SC2086 # the spec may be two words (-e .[test])
    (cd "$ROOT" && "$VENV/bin/pip" install -q -c constraints.txt $spec)
    touch "$stamp"
  fi
}
