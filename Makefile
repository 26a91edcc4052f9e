# linklm: `make run` (the main job on the embedded data) and `make test`.
# Both install what they need into .venv/ first; `make install` is quick when nothing changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel on the development machines; on a GPU machine: make install TORCH=torch
TORCH  ?= torch==2.13.0
# MovieLens-100K ships inside this wheel; we install it without its dependencies and read only its data.
RECBOLE := recbole==1.2.1
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: install run test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev]"
	$(BIN)/python -c "import importlib.metadata as m; m.distribution('recbole')" 2>/dev/null \
		|| $(PIP) install --no-deps "$(RECBOLE)"
	touch $(STAMP)

run: install
	$(BIN)/linklm run --config configs/default.yaml

test: install
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) data runs
