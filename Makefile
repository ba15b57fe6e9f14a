# The setup contract: `make demo` and `make test` work on a fresh machine with only Python 3.11.
# torch is pinned and installed first: torch==2.13.0 is a local CPU wheel; anything else pulls
# several GB of CUDA packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when the project's metadata changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[threads]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet $(TORCH) -e ".[test,dask,threads]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/pyro-vd ard-table --overwrite

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/kl.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
