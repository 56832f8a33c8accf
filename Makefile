# Self-documenting: `make help` lists the targets.
.DEFAULT_GOAL := help
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(BIN)/.installed ## Create .venv with the pinned dependency set and the package

demo: install ## Set up and run the main job on the embedded default (writes demo-out/)
	$(BIN)/suitability demo --out demo-out

test: install ## Set up and run lint and the whole test suite (slow tests included)
	$(BIN)/ruff check src tests benchmarks serving
	$(BIN)/ruff format --check src tests benchmarks serving
	$(BIN)/pytest

bench: install ## Run the benchmarks at full scale (1M customers / 1M training rows; see benchmarks/README.md)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_train.py

bench-install: install ## Add the benchmark-only peers (FLAML, for benchmarks/bench_peers.py) to .venv
	$(BIN)/pip install --quiet --disable-pip-version-check -r benchmarks/requirements-bench.lock

lock: ## Re-resolve requirements.lock and benchmarks/requirements-bench.lock (needs uv)
	uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 -o benchmarks/requirements-bench.lock

.PHONY: help install demo test bench bench-install lock
