# Set-up is two commands: `make serve` and `make test`. Each creates and reuses .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tabby's editor agent, driven by the tests over LSP (node and npm come from the system).
TABBY_AGENT := $(VENV)/node/node_modules/tabby-agent/dist/cli.js

.PHONY: serve test bench lint install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,check,test,bench]'
	$(BIN)/python -m pip install --quiet --no-deps -e examples/tether-example-plugin
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/tether serve

$(TABBY_AGENT): $(STAMP)
	npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error tabby-agent@1.5.0

test: $(STAMP) $(TABBY_AGENT)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
