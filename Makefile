# The two commands of the README. Each sets itself up (idempotent): .venv, the CPU build of torch
# on machines without a GPU (a plain `torch` requirement would pull a multi-GB CUDA build), then
# the package with its extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.motionmae-installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q "torch>=2.4"; \
	else \
		$(PY) -m pip install -q "torch==2.13.0"; \
	fi
	$(PY) -m pip install -q -e ".[test,viz]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/motionmae demo

test: setup
	$(PY) -m ruff check motionmae tests benchmarks
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check motionmae tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
