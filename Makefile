# `make demo` and `make test` work from a fresh clone: each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgenn demo

# The default run covers every command once; `make test-all` adds the slow end-to-end runs.
# Two workers (pytest-xdist), one test file each at a time: most of a test's time is one
# Python thread (tiny models), so 2 cores run the suite in about 0.6 of the time.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check edgenn tests bench
	$(BIN)/python -m pytest -m 'not slow' -q --durations=25 -n $(PYTEST_WORKERS) --dist loadfile

# The slow set (Ray clusters, a board over SSH, timing) runs one test at a time, as verified.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check edgenn tests bench

bench: $(STAMP)
	$(BIN)/python bench/cli_startup.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
