# cola-gym: two entry points.
#   make run    one episode of CoLA-Math500-v0 on the embedded default model
#   make test   the test suite
# Each sets up .venv on first use (pinned versions from requirements.lock).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Data sets are read by path; the project's copies live beside the repository.
COLA_DATA_DIR ?= $(abspath ../shared/data)
export COLA_DATA_DIR

.PHONY: run test lint setup

setup: $(STAMP)

$(STAMP): requirements.lock setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: $(STAMP)
	$(BIN)/cola-gym episode --env CoLA-Math500-v0

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
