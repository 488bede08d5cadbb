# One entry point for people and CI. `make run` and `make test` are the two set-up commands.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check fmt lint types contracts pytest bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,lab,nmap]'
	touch $(STAMP)

run: $(STAMP)  ## the service on SQLite under ./var, the loopback lab, and a first scan of it
	$(BIN)/cybermission demo

test: check  ## every check and the whole test suite

check: $(STAMP) fmt lint types contracts pytest

fmt: $(STAMP)
	$(BIN)/ruff format --check cybermission scanners api tests bench

lint: $(STAMP)
	$(BIN)/ruff check cybermission scanners api tests bench

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# Where the machine allows (root, unshare, socat), the suite runs in parallel workers, each in a
# network namespace of its own, so the loopback address plan holds in every worker
# (tests/netns-python). Elsewhere, or with PYTEST_WORKERS=0, it runs in one process.
# Files start longest first (tests/file_order.py); --no-loadscope-reorder keeps that order.
PYTEST_WORKERS ?= $(shell tests/netns-python --workers)
XDIST := $(if $(filter-out 0,$(PYTEST_WORKERS)),-p xdist --dist loadfile --no-loadscope-reorder --tx $(PYTEST_WORKERS)*popen//python=tests/netns-python)

pytest: $(STAMP)
	CYBERMISSION_TEST_PYTHON=$(BIN)/python $(BIN)/pytest -q $(XDIST) --durations=25

bench: $(STAMP)  ## benchmarks against nmap (loopback only); needs Debian's nmap
	$(BIN)/python -m bench.discovery
	$(BIN)/python -m bench.modbus_identify

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
