# The two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DESIGN := examples/flights/design.yaml

.PHONY: demo test test-fast lint bench clean install

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Build the flights system end to end on the full data set and write its design document.
demo: $(STAMP)
	$(VENV)/bin/mlsd build $(DESIGN)

## The whole test suite, slow end-to-end tests included (this is what CI runs).
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q

## Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports

## Speed against the tools a user would otherwise pick (see bench/README.md).
bench: $(STAMP)
	$(PY) bench/feature_transform.py

clean:
	rm -rf $(VENV) examples/*/.mlsd .pytest_cache
