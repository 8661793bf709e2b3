# gitopsd developer entry points. Every target bootstraps what it needs:
# a pinned uv in .tools/, then .venv from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON := $(PYTHON)

.PHONY: help bootstrap test lint typecheck unit demo clean lock config-reference bench

help:
	@echo "make demo   - run the end-to-end demo against a local ECS endpoint (no AWS account)"
	@echo "make bench  - fleet-scale benchmark (QUICK=1: 100 services); see bench/README.md"
	@echo "make test   - ruff, import contracts, mypy --strict and the whole pytest suite"
	@echo "make lock   - refresh uv.lock after editing pyproject.toml"
	@echo "make config-reference - regenerate config/reference.toml and docs/config.md tables"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(UV) sync --locked --all-extras --all-packages --compile-bytecode  # .pyc: ~1 s less per CLI start
	touch $@

bootstrap: $(VENV)/.synced

lock: $(UV)
	$(UV) lock

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: bootstrap
	$(VENV)/bin/mypy

unit: bootstrap
	$(VENV)/bin/pytest -q

test: lint typecheck unit

config-reference: bootstrap
	$(VENV)/bin/python -m gitopsd.config_reference --write

demo: bootstrap
	$(VENV)/bin/python -m gitopsd.demo

# ecs-deploy (P2's baseline) pins its own botocore: it gets a venv of its own.
BENCH_ECS_DEPLOY := bench/.venv-ecs-deploy
$(BENCH_ECS_DEPLOY)/bin/ecs:
	$(PYTHON) -m venv $(BENCH_ECS_DEPLOY)
	$(BENCH_ECS_DEPLOY)/bin/pip install --quiet --disable-pip-version-check ecs-deploy

bench: bootstrap $(BENCH_ECS_DEPLOY)/bin/ecs
	$(VENV)/bin/python -m bench.run $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
