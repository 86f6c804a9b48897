# The two commands of the README:
#   make run    the main job (creates .venv the first time): every notebook of the series through
#               `mnist-lab batch` into results/batch/: with a CUDA GPU every tutorial's full recipe;
#               without one the CPU-sized settings of notebooks/laptop.yaml (it says which at the start);
#               RECIPES=full asks for the full recipes anyway (AlexNet alone: ~12 h on a 2-core CPU)
#   make test   everything CI runs: lint, format check, unit tests, then every notebook with its
#               smoke parameters under nbval (committed outputs of tagged cells must match)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The numbered notebooks of the series, in order.
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SMOKE_DIR := build/smoke
# A smoke run of a whole notebook takes well under 90 s; one cell never needs more than this.
NBVAL_CELL_TIMEOUT ?= 300
# Run by `make run`; override e.g. `make run BATCH_ARGS="--jobs 2 -p device cuda"` or RECIPES=full.
BATCH_ARGS ?=
RECIPES ?= auto

.PHONY: run test lint notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mnist-lab data --download
	$(BIN)/mnist-lab batch --out results/batch --recipes $(RECIPES) $(BATCH_ARGS)

test: $(STAMP)
	$(BIN)/mnist-lab data --download
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
	$(MAKE) --no-print-directory notebooks

# The CI notebook run: every committed notebook is in normal form (nbstripout's, configured once
# in tools/nbcheck.py; `python tools/nbcheck.py strip FILE` fixes one); each numbered notebook is
# prepared with notebooks/smoke/<stem>.yaml (papermill --prepare-only, undeclared keys refused)
# and executed by nbval, whose kernel is the python running pytest (--nbval-current-env).
# Kernels start in build/smoke/, so results/ of a smoke run land in build/smoke/results/.
notebooks: $(STAMP)
	$(BIN)/python tools/nbcheck.py verify $(wildcard notebooks/*.ipynb)
	rm -rf $(SMOKE_DIR) && mkdir -p $(SMOKE_DIR)
	$(BIN)/python tools/nbcheck.py smoke --out $(SMOKE_DIR) $(NOTEBOOKS)
	$(BIN)/pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout $(NBVAL_CELL_TIMEOUT) \
		$(SMOKE_DIR)/
	@echo "nbval: checked $(words $(NOTEBOOKS)) notebook(s) in $(SMOKE_DIR)/"

# The series as a website in build/site/ (read it with `python -m http.server -d build/site`):
# Sphinx + myst-nb show the committed notebooks' outputs without running them (docs/conf.py).
# -W: a warning (a broken link, a formula or page that cannot be read) fails the build.
.PHONY: site
site: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going -q -d build/site-doctrees docs build/site
	@echo "site: build/site/index.html (python -m http.server -d build/site, then http://127.0.0.1:8000/)"

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build results
