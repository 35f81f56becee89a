# Kairos developer commands. Every target installs what it needs first (see `make env`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen
PROTO_OUT := libs/protos/src

.PHONY: help env protos protos-check lint chromium test test-unit test-integration test-e2e test-browser dev up down bench bench-quick clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml bench/pyproject.toml
	@$(UV) sync --frozen --quiet
	@touch $@

env: $(VENV)/.synced ## Create or update the virtual environment from uv.lock

protos: $(VENV)/.synced ## Generate Python code and .pyi stubs from protos/ into libs/protos
	@$(RUN) python scripts/gen_protos.py $(PROTO_OUT)

protos-check: $(VENV)/.synced ## Fail when the committed generated code differs from what `make protos` makes
	@$(RUN) python scripts/gen_protos.py --check $(PROTO_OUT)

lint: $(VENV)/.synced protos-check ## ruff, mypy (strict) and the protos drift check
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy libs/common/src libs/media/src libs/client/src services/api/src services/scheduler/src services/publisher/src services/console/src tools/cli/src tools/dev/src tools/fakes/src bench/src bench/publisher_cpu.py bench/jetstream_publish_cpu.py tests scripts

# The suite mostly waits on real processes (services, brokers, databases): two pytest-xdist
# workers take it from about 23 to about 14 minutes on a 2-core machine. TEST_WORKERS=0 runs it in
# one process. `--dist=loadgroup` hands out tests one by one as before, except that those of one
# `xdist_group` (the browser tests: one `make dev` stack and one Chromium) go to one worker.
TEST_WORKERS ?= 2

# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
chromium: ## Install Debian's chromium package for the browser tests when /usr/bin/chromium is missing
	@bash scripts/ensure_chromium.sh

test: $(VENV)/.synced chromium ## Run the whole suite against real PostgreSQL and a real NATS server (TEST_WORKERS=2)
	@$(RUN) pytest --numprocesses=$(TEST_WORKERS) --dist=loadgroup $(PYTEST_ARGS)

test-unit: $(VENV)/.synced ## Unit tests only
	@$(RUN) pytest tests/unit $(PYTEST_ARGS)

test-integration: $(VENV)/.synced ## Integration tests only
	@$(RUN) pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(VENV)/.synced ## End-to-end tests only (services as real processes)
	@$(RUN) pytest tests/e2e $(PYTEST_ARGS)

test-browser: $(VENV)/.synced chromium ## Browser tests only: headless Chromium on the console of `make dev`'s stack
	@$(RUN) pytest tests/browser $(PYTEST_ARGS)

# The venv's python directly, not `uv run`: uv forwards the SIGINT it receives, so a Ctrl-C sent
# to the whole process group (an IDE, CI, kill -INT -PGID) would reach the supervisor twice.
dev: $(VENV)/.synced ## Run the whole system on this machine, no Docker; Ctrl-C stops it (DEV_ARGS=--help)
	@$(VENV)/bin/python -m kairos_dev $(DEV_ARGS)

up: ## Run the whole system in Docker, health-gated (docker compose up -d --build); random secrets in .env
	@command -v docker >/dev/null 2>&1 || { echo "make up needs Docker: install Docker Engine (or Docker Desktop) with the compose plugin, or use 'make dev', which needs neither." >&2; exit 2; }
	@docker compose version >/dev/null 2>&1 || { echo "make up needs the Docker compose plugin ('docker compose'): install docker-compose-plugin, or use 'make dev'." >&2; exit 2; }
	@$(PYTHON) scripts/compose_secrets.py .env
	docker compose up -d --build
	@echo "The api listens on 127.0.0.1:50051; make a key with: docker compose exec api python -m kairos_api keys create --tenant demo. 'make down' stops everything (data stays in the volumes)."

down: ## Stop what `make up` started (the data stays in the Docker volumes)
	@command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 || { echo "make down needs Docker with the compose plugin ('docker compose')." >&2; exit 2; }
	docker compose down

bench: $(VENV)/.synced ## Benchmarks beside bare BullMQ and the seeds' design: burst, steady, api, scale (~12 min; BENCH_ARGS=--help)
	@$(RUN) python -m kairos_bench $(BENCH_ARGS)

bench-quick: $(VENV)/.synced ## The same harness with small numbers (about two minutes; make test runs it too)
	@$(RUN) python -m kairos_bench --quick $(BENCH_ARGS)

clean: ## Remove the environments and caches
	rm -rf $(TOOLS) $(VENV) .mypy_cache .ruff_cache .pytest_cache
