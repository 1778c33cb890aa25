# Everything sets itself up: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv test demo demo-ui lint bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The demo, then the dashboard: prints its URL and the token to sign in, runs until Ctrl-C.
demo-ui: $(STAMP)
	$(BIN)/python examples/demo.py --ui

lint: $(STAMP)
	$(BIN)/ruff check client receiver tests examples tools
	$(BIN)/ruff format --check client receiver tests examples tools
	$(BIN)/python tools/typecheck.py

# Benchmarks (tests/bench): one table of figures vs targets. BENCH_ARGS='--only 1,3 --quick' for a subset.
# wrk is apt-installed by the runner when missing (as root); stripe/standardwebhooks are pip-installed for #3.
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis demo-data
