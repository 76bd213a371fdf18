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

# ensure_venv SPEC STAMP: install SPEC (".", "-e .[test]") into .venv once per
# change of pyproject.toml, constraints.txt or the source of a compiled module
# (an editable install builds the extensions once; they must be rebuilt).
ensure_venv() {
  spec="$1"; stamp="$VENV/.$2"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv "$VENV"; }
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/constraints.txt" -nt "$stamp" ] \
    || [ "$ROOT/setup.py" -nt "$stamp" ] || [ "$ROOT/exporter/stores/_table.pyx" -nt "$stamp" ] \
    || [ "$ROOT/exporter/ingest.py" -nt "$stamp" ] || [ "$ROOT/exporter/ingest.pxd" -nt "$stamp" ]; then
    # shellcheck disable=SC2086 # the spec may be two words (-e .[test])
    (cd "$ROOT" && "$VENV/bin/pip" install -q -c constraints.txt $spec)
    touch "$stamp"
  fi
}
