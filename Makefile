# bmbench: `make demo` sets up .venv and runs the main job on the embedded SYNTHETIC data;
# `make test` runs the whole test suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bmbench-installed
DEMO := runs/demo

.PHONY: setup demo test fuzz bench clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/bmbench splits verify
	$(BIN)/bmbench data verify --data synthetic
	$(BIN)/bmbench run submissions/baseline_majority --data synthetic --out $(DEMO) --resume
	$(BIN)/bmbench run submissions/baseline_features_logreg --data synthetic --out $(DEMO) --resume
# the uint8 image cache (each JPEG decoded once): demo_cnn's plain data path and the five fold encoders of the probe
# read its pixels (identical to decoding) instead of decoding every JPEG in every epoch and pass
	$(BIN)/bmbench data cache --data synthetic
	$(BIN)/bmbench run submissions/demo_cnn --data synthetic --out $(DEMO) --resume
# frozen features of demo_cnn's fine-tuned folds (encoder = "run:runs/demo/demo_cnn/synthetic"): linear + kNN-20
	$(BIN)/bmbench probe submissions/demo_cnn_probe --data synthetic --out $(DEMO) --resume
# one call for all five runs: every run is checked before any entry is written
	$(BIN)/bmbench leaderboard add $(DEMO)/baseline_majority/synthetic $(DEMO)/baseline_features_logreg/synthetic \
		$(DEMO)/demo_cnn/synthetic $(DEMO)/demo_cnn_probe/synthetic/linear $(DEMO)/demo_cnn_probe/synthetic/knn-20 \
		--board demo --dir $(DEMO)/board --status reproduced --predictions --replace
	$(BIN)/bmbench leaderboard build --board demo --dir $(DEMO)/board
	$(BIN)/bmbench leaderboard check --board demo --dir $(DEMO)/board

# PYTEST_ARGS=--slurm adds the SLURM tests (they need scripts/slurm-local.sh start; .ci/run does both)
test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

fuzz: setup
	$(BIN)/python -m pytest -q -m fuzz tests/test_properties.py -p no:cacheprovider

bench: setup
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-enable --benchmark-autosave -s

clean-demo:
	rm -rf $(DEMO)
