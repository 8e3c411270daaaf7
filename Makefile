# morphoflow: two commands on a fresh machine.
#   make run   set up .venv, generate the demo screen if missing, run the profiling pipeline
#   make test  set up .venv, run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.morphoflow-installed
DEMO := data/01_raw/demo_screen

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export KEDRO_LOGGING_CONFIG := $(CURDIR)/conf/logging.yml

.PHONY: setup demo run test lint clean-data

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

$(DEMO)/screen.json: | $(STAMP)
	$(BIN)/morphoflow simulate-screen --out $(DEMO) --preset demo --seed 0 > /dev/null

demo: $(DEMO)/screen.json

run: setup demo
	$(BIN)/kedro run --pipelines=profiling

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete
