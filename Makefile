# bmbench: `make demo` sets up .venv and runs the main job on the embedded SYNTHETIC data;
# `make test` runs the whole test suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bmbench-installed
DEMO := runs/demo

.PHONY: setup demo test bench clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/bmbench splits verify
	$(BIN)/bmbench data verify --data synthetic
	$(BIN)/python scripts/demo_predictions.py --out $(DEMO)/predictions.csv
	$(BIN)/bmbench score $(DEMO)/predictions.csv --split synthetic-cv5-v1 --json $(DEMO)/score.json

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-enable --benchmark-autosave -s

clean-demo:
	rm -rf $(DEMO)
