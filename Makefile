# The two commands of the README:
#   make run   set up .venv (idempotent) and run the pipeline: dvc repro with params.yaml
#   make test  set up .venv (idempotent) and run the whole test suite
#   (make test-fast: the tier without the slow end-to-end runs, for iterating)
# and the colorization pipeline (docs/colorization.md):
#   make colorize  dvc repro colorize/dvc.yaml with colorize/params.yaml
# and the family comparison (docs/families.md):
#   make families  train and evaluate ddpm, ddpm_cfg, vae, dcgan for the same wall time each
# CPU machines get torch's local CPU build; on a CUDA machine: make setup TORCH_SPEC='torch==2.13.0'
# The project's dependencies install at the versions a cluster runs (infra/constraints.txt), so the
# tests run what ships; a new release elsewhere changes nothing until the pins move.
# with the index of your CUDA build, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu128.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands and tests call `python`, `dvc`, `ray`: run them from the venv.
export PATH := $(BIN):$(PATH)

.PHONY: setup browser run test test-fast colorize families lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml infra/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c infra/constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	dvc repro

# tests/test_serve.py drives the web page in Debian's chromium: installed when missing (as root,
# with apt-get); elsewhere that one test is skipped with the reason
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; }; } || \
	  echo "no /usr/bin/chromium: the browser test is skipped (apt-get install chromium)"

test: setup browser
	python -m pytest

# everything but the end-to-end runs marked slow (DVC, Ray Tune and Train, the two-node cluster):
# under 5 minutes on 2 cores, for iterating; `make test` runs them all
test-fast: setup
	python -m pytest -m "not slow"

colorize: setup
	dvc repro colorize/dvc.yaml

families: setup
	dvc repro featurenet
	python scripts/compare_families.py --budget-s 240

lint: setup
	ruff check pipeline stages tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
