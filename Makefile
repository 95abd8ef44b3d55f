# The two commands of the README: `make demo` and `make test`. Both set everything up from scratch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION := 2.13.0

.PHONY: install demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: an unpinned torch would pull the CUDA build. The package itself needs only
# onnxruntime; [torch] adds the torch engine and ONNX export, which the recipes and the tests use.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e ".[torch,dev,recipes,app,napari,distributed]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tinysam-annotate app --host 127.0.0.1 --port 7860

# Style, types (pyproject.toml [tool.mypy]) and the layer boundary (the runtime never imports torch:
# pyproject.toml [tool.importlinter]).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
