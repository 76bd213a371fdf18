#!/bin/sh
# Install everything the tests need and run the whole suite: ruff (lint and
# format), mypy --strict, then pytest, then the store tests again on the
# compiled modules' Python source. CI runs exactly this.
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
# The stores and the webhook once more as Python (the compiled modules'
# source, which runs where they could not be built).
CLOUDMAILIN_PURE_PYTHON=1 "$VENV/bin/pytest" -q tests/test_store_contract.py \
  tests/test_stores_durable.py tests/test_fast_paths.py tests/test_webhook.py tests/test_table.py
