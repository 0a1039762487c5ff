# Front door. Every target uses the project's own virtual environments, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
STAMP := $(VENV)/.installed
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: help venv run demo test test-fast lint bench clean clean-stack

help:
	@echo "make demo   provision one tenant end to end on the embedded stack"
	@echo "make run    run the worker on the embedded stack (Temporal Web UI URL printed) until Ctrl-C"
	@echo "make test   the whole suite (unit, workflows, integration, chaos, deploy)"
	@echo "make lint   ruff + mypy"
	@echo "make bench  drain, latency and cost per tenant vs. the ceiling (docs/performance.md); JSON in .bench/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,test]"
	@touch $@

# checkov pins packaging<24 while pytest needs >=24: it gets a venv of its own.
$(CHECKOV_STAMP): deploy/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r deploy/requirements-checkov.txt
	@touch $@

venv: $(STAMP) $(CHECKOV_STAMP)

run: $(STAMP)
	$(BIN)/alga-worker dev

demo: $(STAMP)
	$(BIN)/alga-worker demo

test: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

clean-stack:
	rm -rf .dev-stack

clean: clean-stack
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
