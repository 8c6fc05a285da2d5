# simab: every target creates and uses .venv.  `make demo` runs the default campaign;
# `make test` runs the fast test suite (what CI runs).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: Makefile: PY: $(PY) not found; Python 3.11+ is required (make PY=python3 ...)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Install the pinned CPU build of torch first when none is importable: an unpinned
# torch can pull a multi-GB CUDA build.  pyproject.toml keeps only a lower bound.
$(STAMP): $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/simab run

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check simab simulators policies reports tests scripts

bench: $(STAMP)
	@for s in scripts/bench_*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done

clean:
	rm -rf $(VENV) runs build dist *.egg-info
