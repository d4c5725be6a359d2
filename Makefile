# Everything a newcomer needs goes through here: `make demo`, then `make test`.
# All local state lives in .local/ (git-ignored): the virtualenv, the embedded warehouse, AIRFLOW_HOME, dbt's target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .local/venv
BIN := $(VENV)/bin
CRM := $(BIN)/crm
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# Two pytest workers, a whole module each (its fixtures are per module): most of a real-scheduler test waits on
# polls and heartbeats, so the other worker's modules run meanwhile. docs/testing.md has the measurements.
PYTEST_WORKERS ?= 2
# Everything here syncs from the local CRM simulator; a deployment (the image) syncs from Airbyte, its default
# (include/crm_pipeline/source_mode.py). `CRM_SOURCE_MODE=airbyte make up` tries a real Airbyte.
export CRM_SOURCE_MODE ?= simulator
PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: help venv browser redis cluster-up cluster-down demo bench test test-quick lint unit integration manifest docs gx-docs report up down status warehouse-up warehouse-down \
        psql lock dockerfile-lint image-replay clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# --compile-bytecode: pip compiles on install (the image does), uv does not by default; without .pyc files, and with
# PYTHONDONTWRITEBYTECODE set as on CI machines, every Airflow task, dbt run and DAG parse compiles its imports again.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> creating $(VENV) and installing the locked requirements (first time: about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --upgrade >/dev/null
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --compile-bytecode -r requirements.txt -r requirements-dev.txt
	@VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .local/venv from the lock (only when the lock changed)

demo: venv ## set everything up, run the pipeline end to end, print a summary
	@$(CRM) demo

bench: venv ## measure against the bare tools and write BENCHMARKS.md (SCALE=S|M|L, REPEAT=3, P6_SCALE=L)
	@$(CRM) bench --scale $(or $(SCALE),M) --repeat $(or $(REPEAT),3) --end-to-end-scale $(or $(P6_SCALE),L)

test: venv browser redis lint image-replay ## lint, replay the image build, then unit, DAG and integration tests (real PostgreSQL, Airflow, dbt, GX)
	@$(CRM) manifest >/dev/null
	@$(BIN)/pytest $(PARALLEL)

lint: venv dockerfile-lint ## ruff and sqlfluff
	@echo "==> ruff"
	@$(BIN)/ruff check include dags plugins tests
	@$(BIN)/ruff format --check include dags plugins tests
	@echo "==> sqlfluff"
	@$(BIN)/sqlfluff lint dbt_project/models dbt_project/macros --disable-progress-bar --nocolor

dockerfile-lint: venv ## hadolint the Dockerfile (the image cannot be built here: no Docker engine)
	@echo "==> hadolint"
	@$(BIN)/hadolint Dockerfile

image-replay: venv ## replay the Dockerfile's steps without Docker: pip install of the lock, RUN steps, DAG parse
	@echo "==> replaying the image build (first time: pip installs the lock, about 90 s)"
	@$(BIN)/python -m crm_pipeline.image_replay

test-quick: venv browser ## everything make test runs but the real-scheduler tier (marked slow): the edit-test loop
	@$(CRM) manifest >/dev/null
	@$(BIN)/pytest $(PARALLEL) --no-loadscope-reorder --longest-first -m "not slow"

unit: venv ## only the fast tests
	@$(BIN)/pytest -m "not integration"

integration: venv ## only the integration tier
	@$(CRM) manifest >/dev/null
	@$(BIN)/pytest -m integration

manifest: venv ## build the dbt manifest Cosmos renders from (the Dockerfile's `dbt parse` step)
	@$(CRM) manifest

docs: venv ## generate the dbt docs site (.local/dbt/target/index.html)
	@$(CRM) dbt docs generate

gx-docs: venv ## build the GX Data Docs site of the latest gate runs (.local/gx/)
	@$(CRM) gx-docs

report: venv ## write the pipeline health page (freshness, gate verdicts, volumes) to .local/report/health.html
	@$(CRM) report

browser: ## install Debian's Chromium (headless screenshots and UI tests) when it is missing: apt, as root
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "Chromium is missing: sudo apt-get install chromium (Debian's package)"; exit 1; fi; \
	echo "==> installing Debian's chromium (first time: about a minute)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

up: venv ## start Airflow (api-server, scheduler, dag-processor, triggerer) and print the UI URL
	@$(CRM) up

down: ## stop exactly the Airflow processes `make up` started
	@if [ -x $(CRM) ]; then $(CRM) down; fi

cluster-up: venv redis ## start Airflow with the CeleryExecutor: two Celery workers, a Redis broker (running one, or its own)
	@$(CRM) cluster up

cluster-down: ## stop exactly what `make cluster-up` started (a Redis that was already running stays)
	@if [ -x $(CRM) ]; then $(CRM) cluster down; fi

redis: ## install Debian's redis-server when it is missing (as root; without root, a Redis on 127.0.0.1:6379 will do)
	@command -v redis-server >/dev/null && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && exit 0; \
	  echo "Redis is missing: sudo apt-get install redis-server (Debian's package)"; exit 1; fi; \
	echo "==> installing Debian's redis-server"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

status: venv ## which Airflow components are running
	@$(CRM) status

warehouse-up: venv ## start the embedded warehouse (or check CRM_WAREHOUSE_URL)
	@$(CRM) warehouse up

warehouse-down: ## stop the embedded warehouse
	@if [ -x $(CRM) ]; then $(CRM) warehouse down; fi

psql: venv ## open psql on the warehouse
	@$(CRM) warehouse psql

lock: ## regenerate requirements.txt and requirements-dev.txt from the .in files
	@test -x $(BIN)/uv || $(MAKE) venv
	@$(BIN)/uv pip compile --quiet --universal --python-version 3.11 requirements.in -o requirements.txt
	@$(BIN)/uv pip compile --quiet --universal --python-version 3.11 requirements-dev.in -o requirements-dev.txt

clean: down warehouse-down ## stop everything and delete .local/
	@rm -rf .local
