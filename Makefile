# Pass numérique — two commands for a newcomer: `make run` and `make test`.
# Needs Python >= 3.11 and Node (npm). With no DATABASE_URL, an embedded PostgreSQL (pgserver)
# runs in ./.passnum/pgdata, and keeps running after `make run` stops: `make stop` stops it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PORT ?= 8000

.PHONY: run stop test deps install node demo serve bench lint clean

run: deps
	$(BIN)/passnum migrate
	$(BIN)/passnum demo
	@echo "Service : http://127.0.0.1:$(PORT)/  (arrêt : Ctrl-C ; puis make stop arrête la base intégrée)"
	PORT=$(PORT) $(BIN)/passnum serve

# Stops the embedded PostgreSQL of ./.passnum (never DATABASE_URL's server); nothing if not running.
stop:
	@if [ -x $(BIN)/passnum ]; then $(BIN)/passnum stop-db; \
	else echo "Pas d'environnement $(VENV) : aucune base intégrée à arrêter."; fi

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
