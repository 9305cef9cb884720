# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo ui test test-e2e lint bench bench-pipeline clean-state

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q uv >/dev/null 2>&1 || true
	@if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install -q -p $(BIN)/python -e ".[dev,infra]"; \
	 else $(BIN)/python -m pip install -q -e ".[dev,infra]"; fi
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install          ## start the local PostgreSQL, migrate, materialize the whole graph, print a summary
	$(BIN)/wealth-pipeline demo

ui: install            ## the Dagster UI on the demo's state
	$(BIN)/wealth-pipeline ui

test: install          ## the whole test suite (starts its own PostgreSQL and S3 API on loopback)
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check wealth_pipeline wealth_pipeline_tests bench

bench: install         ## benchmarks, on demand
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-pipeline: install  ## the whole daily graph through Dagster: make bench-pipeline ARGS="--securities 50 --years 2"
	$(BIN)/python bench/pipeline.py $(ARGS)

clean-state:           ## stop the local cluster and delete .wealth/
	-$(BIN)/wealth-pipeline db stop
	rm -rf .wealth
