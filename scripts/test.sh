#!/bin/sh
# Install everything the tests need and run the whole suite: ruff (lint and
# format), mypy --strict, then pytest. CI runs exactly this.
. "$(dirname "$0")/env.sh"

# The real programs the tests start: promtool and Prometheus, Alertmanager,
# Redis, and wrk for the benchmark's smoke run.
missing=""
for cmd in promtool prometheus prometheus-alertmanager redis-server wrk taskset; do
  command -v "$cmd" >/dev/null 2>&1 || missing="yes"
done
if [ -n "$missing" ]; then
  apt_install prometheus prometheus-alertmanager redis-server wrk util-linux
  # Debian may start the packaged services; the tests start their own.
  for svc in prometheus prometheus-alertmanager redis-server prometheus-node-exporter; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

ensure_venv "-e .[test]" test
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/pytest" "$@"
