# hepnb: the README's commands. `make demo` runs the main job, `make test` all tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LAB_PORT ?= 8888

.PHONY: install demo test pytest nbtest check-sync lab bench clean FORCE

# One venv, the project editable, torch pinned to the CPU wheel by constraints.txt. Installed again only when
# pyproject.toml or constraints.txt change in content (tools such as nbdev-export may touch their dates).
DEPS_HASH = $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
$(VENV)/.installed: FORCE
	@if [ "$$(cat $@ 2>/dev/null)" != "$(DEPS_HASH)" ]; then \
	  set -e; test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  echo "installing hepnb into $(VENV) (a few minutes the first time)"; \
	  $(BIN)/python -m pip install -q --upgrade pip; \
	  $(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"; \
	  echo "$(DEPS_HASH)" > $@; fi

FORCE:

install: $(VENV)/.installed

## The main job on the embedded default data: the quickstart campaign (simulate -> explore, train the ATAR
## stages briefly on CPU -> evaluate ML against the classical baselines) and its index.
demo: install
	$(BIN)/hepnb campaign run campaigns/quickstart.yaml
	@echo "open reports/quickstart/index.html"

## All tests: notebooks in sync and clean, notebook tests, pytest.
test: install check-sync nbtest pytest

check-sync: install
	@$(BIN)/nbdev-export
	@$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- hepnb nbs)" ]; then \
	  echo "hepnb/ is out of sync with nbs/ or notebooks are not clean (run nbdev-export and nbdev-clean, then commit):"; \
	  git status --porcelain -- hepnb nbs; exit 1; fi

nbtest: install
	$(BIN)/nbdev-test --n-workers 2

pytest: install
	$(BIN)/python -m pytest

## JupyterLab on 127.0.0.1. The token comes from $$HEPNB_LAB_TOKEN or the file $$HEPNB_LAB_TOKEN_FILE (default
## ~/.config/hepnb/lab-token, made once, mode 600), never from the command line; no token, no start.
lab: install
	$(BIN)/hepnb lab --port $(LAB_PORT)

bench: install
	$(BIN)/python benchmarks/bench_simulation.py
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_display.py

clean:
	rm -rf runs/quickstart reports/quickstart .pytest_cache
