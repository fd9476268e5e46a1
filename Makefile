# Multiline: `make demo` and `make test` install what they need (Python venv, Azurite from npm) by themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo test lint serve clean

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

clean:
	rm -rf .multiline .pytest_cache
