# Two commands for a fresh clone: `make demo` and `make test`. Each creates .venv and installs
# what it needs. torch is pinned to 2.13.0 in pyproject.toml (a CPU build pip takes from this
# machine's disk; an unpinned torch would pull a CUDA build of several GB).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench fixtures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The benchmarks quoted in the README, on the configured database (WORKBENCH_DATABASE_URL; the
# queue and review-latency targets are for Postgres). Results go to benchmarks/. Takes about half an hour.
bench: $(STAMP)
	$(BIN)/workbench bench embed-text
	$(BIN)/workbench bench embed-media
	$(BIN)/workbench bench knn
	$(BIN)/workbench bench select --pool-size 1000000
	$(BIN)/workbench bench al
	$(BIN)/workbench bench agreement
	$(BIN)/workbench bench agreement-scale
	$(BIN)/workbench bench queue --project bench-queue --workers 32 --items 30000 --kill-fraction 0.1
	$(BIN)/workbench bench queue-latency --sizes 10000,100000,1000000
	$(BIN)/workbench bench review-latency --items 2000 --labels 50 --allow-sqlite

fixtures: $(STAMP)
	$(BIN)/python scripts/make_fixtures.py

clean:
	rm -rf $(VENV) .workbench .pytest_cache .ruff_cache
