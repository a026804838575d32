# The two set-up commands: `make demo` and `make test`. Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DESIGN := examples/flights/design.yaml

.PHONY: demo demo-lending demo-tweets test test-fast lint bench bench-features bench-serving bench-serving-client bench-monitor bench-monitor-log clean install

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The flights system end to end on the full data set: build the champion and a challenger, serve
## them with the design's canary, replay the test months with feedback, show the rollout's state,
## monitor, check the log (examples/flights/demo.sh says each step; docs/rollout.md the rollout).
demo: $(STAMP)
	examples/flights/demo.sh $(VENV)/bin/mlsd

## The lending system end to end (examples/lending): a rare class, every imbalance option compared,
## a pseudonymised column; built, served, replayed with feedback and monitored.
demo-lending: $(STAMP)
	examples/lending/demo.sh $(VENV)/bin/mlsd

## The tweets system end to end (examples/tweets): raw text, TF-IDF vs MiniLM compared, built,
## served, replayed with feedback and monitored with its text watches (docs/text-features.md).
demo-tweets: $(STAMP)
	examples/tweets/demo.sh $(VENV)/bin/mlsd

## The whole test suite, slow end-to-end tests included (this is what CI runs; it lists the 15
## slowest tests, so the suite's budget stays in sight). Tests marked
## `exclusive` measure timing under a load they make themselves, so they run first, alone.
test: $(STAMP)
	$(PY) -m pytest -q -m exclusive
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not exclusive" --durations=15

## Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow and not exclusive"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src

## Speed against the tools a user would otherwise pick (see bench/README.md).
bench: bench-features bench-serving bench-monitor

bench-features: $(STAMP)
	$(PY) bench/feature_transform.py

# wrk (Debian's package) on one core, each server on the other: mlsd serve single / shadow /
# canary, mlflow models serve and BentoML (its own venv under /tmp) on the flights champion.
bench-serving: $(STAMP)
	$(PY) bench/serving_wrk.py

# the older bench: a Python (httpx) client sharing the cores with the server, plus in-process
bench-serving-client: $(STAMP)
	$(PY) bench/serving.py

# Evidently lives in its own venv: it needs pandas<3 and plotly<6, which mlsd does not use.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed-stamp: bench/requirements-evidently.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements-evidently.txt
	touch $@

## drift vs Evidently on 1M x 50, then `mlsd monitor` end to end over a 1,000,000-prediction log
bench-monitor: $(STAMP) $(BENCH_VENV)/.installed-stamp bench-monitor-log
	$(PY) bench/monitor_drift.py

## `mlsd monitor` end to end over a 1,000,000-prediction SQLite log (filled once, then reused).
bench-monitor-log: $(STAMP)
	$(PY) bench/monitor_log.py --profile

clean:
	rm -rf $(VENV) $(BENCH_VENV) examples/*/.mlsd .pytest_cache
