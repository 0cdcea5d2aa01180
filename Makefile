# Pass numérique — two commands for a newcomer: `make run` and `make test`.
# Needs Python >= 3.11 and Node (npm). With no DATABASE_URL, an embedded PostgreSQL (pgserver)
# runs in ./.passnum/pgdata.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PORT ?= 8000

.PHONY: run test deps install node demo serve bench lint clean

run: deps
	$(BIN)/passnum migrate
	$(BIN)/passnum demo
	@echo "Service : http://127.0.0.1:$(PORT)/  (arrêt : Ctrl-C)"
	PORT=$(PORT) $(BIN)/passnum serve

test: deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

deps: install node

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

node: $(NODE_STAMP)

$(NODE_STAMP): package.json
	@if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; \
	else npm install --no-audit --no-fund --loglevel=error; fi
	touch $(NODE_STAMP)

bench: deps
	$(BIN)/python bench/ledger_post.py
	$(BIN)/python bench/issuance.py
	$(BIN)/python bench/redemption.py
	$(BIN)/python bench/clearing.py

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) node_modules .pytest_cache
