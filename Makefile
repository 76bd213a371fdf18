# Two entry points the README promises on a fresh Debian machine:
#   make run    install the exporter in .venv and run it with its defaults
#   make test   install everything the tests need, lint, type-check, test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests run for real: promtool/Prometheus, Alertmanager,
# Redis and the wrk load generator (for the benchmark's smoke run).
DEBIAN_PACKAGES := prometheus prometheus-alertmanager redis-server wrk

.PHONY: run test lint unit bench generate previews system-deps clean

run: $(VENV)/.runtime
	$(BIN)/cloudmailin-exporter

test: system-deps $(VENV)/.test lint unit

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(VENV)/.test
	$(BIN)/pytest

generate: $(VENV)/.test
	$(BIN)/python -m exporter.monitoring.generate

# Pictures of the dashboards filled with live data, for the README.
previews: system-deps $(VENV)/.test
	UPDATE_PREVIEWS=1 $(BIN)/pytest -q tests/test_dashboards.py -k preview

bench: system-deps $(VENV)/.test
	$(BIN)/python -m bench

system-deps:
	@missing=""; \
	for cmd in promtool prometheus prometheus-alertmanager redis-server wrk; do \
	  command -v $$cmd >/dev/null 2>&1 || missing=yes; \
	done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	  for svc in prometheus prometheus-alertmanager redis-server prometheus-node-exporter; do \
	    $(SUDO) systemctl disable --now $$svc >/dev/null 2>&1 || true; \
	  done; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }

$(VENV)/.runtime: $(VENV)/bin/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt .
	touch $@

$(VENV)/.test: $(VENV)/bin/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
