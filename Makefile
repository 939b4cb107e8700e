# The README's two commands: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STACK := $(PY) -m trading.devstack

.PHONY: run test lint pytest bench frontend setup clean

run: setup
	$(STACK) run

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed static/dist/app.js

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/mypy .
	$(BIN)/bandit -q -c pyproject.toml -r apps trading bench manage.py --severity-level medium
	$(PY) -m trading.check_settings

bench: setup
	$(STACK) exec -- $(PY) -m bench $(BENCH_ARGS)

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/dist/app.js: node_modules/.installed $(wildcard static/src/*.js)
	npm run --silent build

frontend: static/dist/app.js

clean:
	rm -rf $(VENV) node_modules static/dist .mypy_cache .ruff_cache .pytest_cache
