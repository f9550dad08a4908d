# Front end for the two newcomer commands (README) and the developer conveniences.
# Every target bootstraps .venv first (idempotent, skipped when nothing changed).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
UI_PORT ?= 3000

.PHONY: demo test test-fast ui bench venv clean-demo

venv:
	@scripts/bootstrap.sh

## The main job: synthetic stand-in data + every asset of the graph, in the embedded Dagster instance.
demo: venv
	@$(BIN)/morphable demo

## The whole test suite that runs on a CPU machine (what CI runs): TEST_WORKERS pytest-xdist workers (one test file
## each at a time, so a file's fixtures stay in one process), and the 25 slowest tests listed at the end.
TEST_WORKERS ?= 2
test: venv
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: venv
	@$(BIN)/python -m pytest -q -m "not slow and not e2e"

## Dagster UI on 127.0.0.1 (embedded instance under .dagster_home).
ui: venv
	@$(BIN)/morphable ui --port $(UI_PORT)

bench: venv
	@for b in benchmarks/bench_*.py; do [ -e "$$b" ] && $(BIN)/python "$$b"; done; true

clean-demo:
	rm -rf .morphable .dagster_home
