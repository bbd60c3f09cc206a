# cola-gym: two entry points.
#   make run    one episode of CoLA-Math500-v0 on the embedded default model
#   make test   the test suite
# Each sets up .venv on first use (pinned versions from requirements.lock).
#
# On a CUDA machine, set up with `make setup-cuda` first (the same pins, with torch's CUDA
# libraries); `make test-gpu` then runs the GPU suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Data sets are read by path; the project's copies live beside the repository.
COLA_DATA_DIR ?= $(abspath ../shared/data)
export COLA_DATA_DIR

.PHONY: run test test-gpu lint setup setup-cuda

setup: $(STAMP)

$(STAMP): requirements.lock setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# The lock's torch pin resolves to the CPU build on a CPU index; from PyPI on a CUDA host it is the
# CUDA build, which needs its nvidia-* and triton packages: installed here with torch's own deps.
setup-cuda:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	grep -v '^torch==' requirements.lock > $(VENV)/requirements-without-torch.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(VENV)/requirements-without-torch.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep '^torch==' requirements.lock)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print(torch.__version__, torch.cuda.get_device_name())"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cola-gym episode --env CoLA-Math500-v0

test: $(STAMP)
	$(BIN)/python -m pytest

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu tests/gpu

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
