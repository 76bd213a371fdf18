# Shortcuts. The README's two commands are the scripts themselves, which need
# nothing but Python 3.11 (and apt) on a fresh Debian machine:
#   scripts/run.sh    install the exporter in .venv and run it with its defaults
#   scripts/test.sh   install everything the tests need; lint, type-check, test
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint unit fast bench generate clean

run:
	scripts/run.sh

test:
	scripts/test.sh

lint: test-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: test-venv
	$(BIN)/pytest

# The fast part (a minute or two): no Prometheus, Alertmanager, Helm, several
# processes or benchmark smoke run. CI runs everything (`make test`).
fast: test-venv
	$(BIN)/pytest -q -m "not e2e and not slow"

generate: test-venv
	$(BIN)/python -m exporter.monitoring.generate

# The run recorded in bench/README.md (about 25 minutes);
# `make bench BENCH_ARGS=--smoke` for a few seconds.
BENCH_ARGS ?= --rounds 5 --seconds 8 --soak 600
bench: test-venv
	$(BIN)/python -m bench $(BENCH_ARGS)

.PHONY: test-venv
test-venv:
	@ROOT=$(CURDIR) . scripts/env.sh && ensure_venv "-e .[test]" test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	find exporter \( -name '*.so' -o -name '*.c' -o -name '*.html' \) -delete
