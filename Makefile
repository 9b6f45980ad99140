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

# pip-audit checks every installed dependency against the PyPI advisory database; --strict fails
# when a package cannot be audited (say, offline), so a green lint means it really looked. A
# finding the team accepts goes in pip-audit-accepted.txt as `ID  reason` and is skipped here.
AUDIT_ACCEPTED := $(shell grep -v '^\s*\#' pip-audit-accepted.txt 2>/dev/null | awk 'NF {print "--ignore-vuln", $$1}')

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off $(AUDIT_ACCEPTED)

# The benchmarks quoted in the README, each line the command recorded in the quoted file. Results
# go to benchmarks/; each file records date, machine, command and load average. Takes about an hour.
# The queue, queue-latency and review-latency lines run on Postgres at BENCH_DATABASE_URL (created if
# absent; the review-latency target is Postgres) and, where the README quotes SQLite too, on
# BENCH_SQLITE_URL. The al line reports split seeds 2,3,4: split seed 0 shaped the configurations
# and seed 1 was looked at, so neither is used for the reported table.
DAVIDSON ?= ../shared/data/davidson/labeled_data.csv
BENCH_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/workbench_bench
BENCH_SQLITE_URL ?= sqlite:///.workbench/bench.db
AL_SPLIT_SEEDS ?= 2,3,4
AL_STRATEGIES := random;margin;entropy;cluster_margin;seals/top_positive;$\
mix:entropy=0.6,seals/least_confidence=0.25,seals/top_positive=0.15;$\
mix:entropy=0.55,seals/least_confidence=0.2,seals/top_positive=0.15,random=0.1
PG := WORKBENCH_DATABASE_URL=$(BENCH_DATABASE_URL)
LITE := WORKBENCH_DATABASE_URL=$(BENCH_SQLITE_URL)

bench: $(STAMP)
	$(BIN)/workbench bench embed-text --data $(DAVIDSON) --limit 3000 \
		--threads 2 --variants fp32,onnx-fp32,onnx-int8-mixed,onnx-int8-block
	$(BIN)/workbench bench embed-media
	$(BIN)/workbench bench knn
	$(BIN)/workbench bench select --pool-size 1000000 --dim 384 --batch 100 --timeout 120 \
		--strategies random,margin,entropy,cluster_margin,seals,ranked_batch,st_breaking_ties
	$(BIN)/workbench bench al --data $(DAVIDSON) --seeds 10 --seed-labels 100 --budget 2000 \
		--batch 100 --jobs 2 --split-seeds $(AL_SPLIT_SEEDS) --strategies '$(AL_STRATEGIES)'
	$(BIN)/workbench bench agreement --data $(DAVIDSON)
	$(BIN)/workbench bench agreement-scale --labels 1000000
	$(BIN)/python benchmarks/create_database.py $(BENCH_DATABASE_URL)
	$(PG) $(BIN)/workbench db upgrade
	mkdir -p .workbench
	$(PG) $(BIN)/workbench bench queue --project bench-queue --workers 32 --items 30000 \
		--kill-fraction 0.1
	$(LITE) $(BIN)/workbench bench queue --project bench-queue --workers 32 --items 20000 \
		--kill-fraction 0.1
	$(PG) $(BIN)/workbench bench queue-latency --sizes 10000,100000,1000000
	$(LITE) $(BIN)/workbench bench queue-latency --sizes 10000,100000,1000000
	$(PG) $(BIN)/workbench bench review-latency --items 6000 --labels 50
	$(BIN)/workbench bench eval --data $(DAVIDSON)
	$(BIN)/workbench bench pdq --n 1000000 --queries 1000
	$(BIN)/workbench bench scan --data $(DAVIDSON)
	$(BIN)/workbench bench scan --data $(DAVIDSON) --clients 32 --seconds 60
	$(BIN)/workbench bench engine --data $(DAVIDSON) --texts 2000

fixtures: $(STAMP)
	$(BIN)/python scripts/make_fixtures.py

clean:
	rm -rf $(VENV) .workbench .pytest_cache .ruff_cache
