# Multiline: `make demo` and `make test` install what they need (Python venv, Azurite from npm) by themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo test lint serve clean bench-drift

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Multiline needs Python 3.11 or newer; found " + sys.version.split()[0] + " at $(PYTHON)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) (first time: a few minutes)"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v node >/dev/null || { echo "Node.js 18+ with npm is required: Azurite (the local Blob Storage) runs on it. Install Node.js, then run make again." >&2; exit 1; }
	@command -v npm >/dev/null || { echo "npm is required to install Azurite; install it with Node.js, then run make again." >&2; exit 1; }
	@echo "installing Azurite from npm into node_modules/"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	$(BIN)/multiline demo

serve: install
	$(BIN)/multiline serve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Drift benchmark: the product's check runs in $(VENV); Evidently (needs pandas<3) in its own optional venv,
# which benchmarks/drift.py calls as a subprocess on the same data.
EVIDENTLY_VENV := benchmarks/.venv-evidently

$(EVIDENTLY_VENV)/.installed:
	@test -x $(EVIDENTLY_VENV)/bin/python || python3.11 -m venv $(EVIDENTLY_VENV)
	@echo "installing Evidently 0.7.23 into $(EVIDENTLY_VENV) (first time: a few minutes)"
	@$(EVIDENTLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(EVIDENTLY_VENV)/bin/python -m pip install --quiet evidently==0.7.23 'pandas<3' numpy
	@touch $@

bench-drift: $(PY_STAMP) $(EVIDENTLY_VENV)/.installed
	$(BIN)/python benchmarks/drift.py --evidently-python $(EVIDENTLY_VENV)/bin/python

clean:
	rm -rf .multiline .pytest_cache
