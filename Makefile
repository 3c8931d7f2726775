# Payments suite. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Makes PostgreSQL and RabbitMQ reachable and exports DATABASE_URL / AMQP_URL for the recipe.
INFRA = eval "$$($(PY) scripts/infra.py)"

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (apt-get install python3.11 python3.11-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the suite with its dev tools

.PHONY: infra
infra: $(STAMP) ## make PostgreSQL and RabbitMQ reachable and print their URLs
	@$(PY) scripts/infra.py

.PHONY: run
run: $(STAMP) ## start the whole suite in the foreground with demo data
	@$(INFRA); export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; \
	  $(PY) -m services.cli migrate && exec $(VENV)/bin/honcho start -f Procfile

.PHONY: test
test: $(STAMP) ## the whole test suite against real PostgreSQL and RabbitMQ
	@$(INFRA); export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; \
	  $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: openapi
openapi: $(STAMP) ## regenerate the checked-in OpenAPI documents from contracts/
	$(PY) -m contracts.generate

.PHONY: bench-serialization
bench-serialization: $(STAMP) ## msgspec vs pydantic on our wire payloads
	$(PY) bench/serialization.py

.PHONY: bench-ledger
bench-ledger: $(STAMP) ## ledger throughput vs this disk's per-commit baseline
	@$(INFRA); $(PY) bench/ledger.py $(BENCH_ARGS)

.PHONY: bench-router
bench-router: $(STAMP) ## routing decision cost and the outage drill
	@$(INFRA); $(PY) bench/router.py $(BENCH_ARGS)

.PHONY: bench-recon
bench-recon: $(STAMP) ## reconciliation of 1M lines vs a bare DuckDB join
	@$(INFRA); $(PY) bench/recon.py $(BENCH_ARGS)

.PHONY: clean
clean: ## remove the virtualenv and run-time files
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench-risk
bench-risk: $(STAMP) ## risk evaluation p50/p99 with 200 rules vs a merchant API round trip
	$(PY) bench/risk.py $(BENCH_ARGS)

.PHONY: loadtest
loadtest: $(STAMP) ## locust headless against a suite it starts; thresholds decide the exit code (LOADTEST_ARGS)
	@$(INFRA); $(PY) -m loadtest.run $(LOADTEST_ARGS)

.PHONY: bench-e2e
bench-e2e: $(STAMP) ## end-to-end payouts/s, p50/p99 and CPU per 1,000 vs bare aiohttp; plots docs/img/e2e.png
	@$(INFRA); $(PY) bench/e2e.py $(BENCH_ARGS) && $(PY) bench/plot_e2e.py

.PHONY: chaos
chaos: $(STAMP) ## faults at random moments under traffic (own PostgreSQL/RabbitMQ), then every invariant (CHAOS_ARGS)
	@$(INFRA); $(PY) -m tests.chaos.run $(CHAOS_ARGS)
