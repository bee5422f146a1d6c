# Firstline: `make dev` runs the whole system, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: dev test install lint bench clean-data

$(VENV)/.installed: pyproject.toml requirements.lock
	bash scripts/ensure-system.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: install
	$(PY) -m scripts.dev

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check shared services tests bench scripts
	$(VENV)/bin/mypy shared

bench: install
	$(PY) -m bench.foundation
	$(PY) -m bench.e2e

clean-data:
	rm -rf .data
