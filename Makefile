# bifsmn: `make demo` runs the quickstart pipeline end to end; `make test` runs the test suite (`make test-fast`
# skips the end-to-end tests marked slow).
# Both set everything up first (Debian packages when missing, the .venv with the package), idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng libsndfile1 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user llvm-16 clang
STAMP := $(VENV)/.installed
PIP_QUIET := 2>&1 | { grep -v -e "is ignored: it is neither" -e "^$$" || true; }

.PHONY: help setup apt demo test test-fast lint format fuzz clean

help:
	@echo "make demo   - set up, then run pipelines/quickstart.yaml end to end"
	@echo "make test   - set up, then run the test suite"
	@echo "make test-fast - the test suite without the end-to-end tests marked slow (the inner loop)"
	@echo "make setup  - Debian packages (when missing) and the .venv"
	@echo "make lint   - ruff check and format check"

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y $$missing (continuing with what is here)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the bifsmn package into $(VENV) (torch is large: about a minute the first time)"
	@$(BIN)/pip install -q --upgrade pip $(PIP_QUIET)
	@$(BIN)/pip install -q -e '.[dev,onnx]' $(PIP_QUIET)
	@touch $(STAMP)

setup: apt $(STAMP)

DEMO := runs/quickstart

demo: setup
	$(BIN)/bifsmn run -c pipelines/quickstart.yaml
	@echo; echo "== bifsmn-infer: the C engine alone (no Python) classifies a few test clips =="
	@cd $(DEMO)/download/data && ../../build-kernel/host/bifsmn-infer --top 2 ../../export/model_1x.bfsm \
	  $$(grep -E '^(yes|no|stop|go)/' testing_list.txt | head -n 4)
	@echo; echo "== bench report: $(DEMO)/bench/report.md =="
	@cat $(DEMO)/bench/report.md

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# libFuzzer on the .bfsm loader, the WAV reader and the stream (clang): FUZZ_SECONDS per target; the corpus is kept in
# csrc/build/fuzz/corpus/<target>, crashing inputs in csrc/build/fuzz/crashes/.
FUZZ_SECONDS ?= 600
fuzz: setup
	$(BIN)/python csrc/fuzz/fuzz.py --seconds $(FUZZ_SECONDS)

clean:
	rm -rf runs csrc/build .pytest_cache
