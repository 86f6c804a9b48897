# The two commands of the README:
#   make run    the main job (creates .venv the first time)
#   make test   everything CI runs: lint, format check, unit tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mnist-lab data --download
	$(BIN)/mnist-lab train --model deep_mlp --json results/deep_mlp.json --plot results/deep_mlp.png

test: $(STAMP)
	$(BIN)/mnist-lab data --download
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build results
