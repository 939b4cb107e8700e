# The README's two commands: `make run` and `make test`. Everything else is a step of theirs.
# Django 5.2 supports Python 3.11 to 3.13: the newest of them that runs here, unless PYTHON= names one.
# (A pyenv shim may exist for a version that is not installed: each candidate is run, not just found.)
SUPPORTED_PYTHONS := python3.13 python3.12 python3.11
PYTHON ?= $(shell for p in $(SUPPORTED_PYTHONS); do \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
STACK := $(PY) -m trading.devstack

.PHONY: run test test-fast system-run system-test lint jslint jstest bench bench-check screenshot frontend setup setup-runtime lock clean

run: setup-runtime
	$(STACK) run

# pytest-xdist workers, each with its own SecantusDBs, Redis database, ports and temporary folders
# (tests/stack_plugin.py); the browser tests all go to one of them (one Chromium, one server per module).
TEST_WORKERS ?= 4
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadgroup

test: setup lint jslint jstest
	$(PY) -m pytest $(PYTEST_PARALLEL) --durations=25 $(PYTEST_ARGS)

# The inner loop: unit and property tests only (no browser, no killed or started processes: `slow`).
test-fast: setup
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not browser and not slow" $(PYTEST_ARGS)

# The browser modules and their tests under Biome's recommended lint rules (package.json pins Biome);
# biome.json adds the size limits for static/src: functions <= 60 lines, modules <= 400.
jslint: setup
	node_modules/.bin/biome lint static/src tests/js

# The browser modules' property tests (fast-check) under node's own test runner.
jstest: setup
	node --test tests/js/

# `make run` installs the runtime set only; tests, lint and benchmarks the development set (a superset).
# Each first installs the system packages it lacks (.ci/system-packages: as root; otherwise it prints the command).
setup-runtime: system-run $(VENV)/.runtime node_modules/.installed static/dist/app.js
setup: system-test $(VENV)/.dev node_modules/.installed static/dist/app.js

system-run system-test:
	@.ci/system-packages $(@:system-%=%)

lint: setup
	$(PIP) check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/mypy .
	$(BIN)/bandit -q -c pyproject.toml -r apps trading manage.py --severity-level medium
	$(BIN)/lint-imports --no-cache
	$(PY) -m trading.check_settings
	$(PY) -m trading.check_size

bench: setup
	$(STACK) exec -- $(PY) -m bench $(BENCH_ARGS)

# The same runs, then exit 1 when any benchmark missed one of its targets.
bench-check: setup
	$(STACK) exec -- $(PY) -m bench --check $(BENCH_ARGS)

# Regenerate docs/screenshot-dashboard.png (the README's picture) from a live, seeded dashboard.
screenshot: setup
	$(PY) -m pytest tests/browser/screenshot.py -q

$(PY):
	@test -n "$(PYTHON)" || { echo "No supported Python: install Python 3.11, 3.12 or 3.13, or run with PYTHON=/path/to/python3.x" >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install --require-hashes -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt | $(PY)
	$(PIP) install --require-hashes -r requirements-dev.txt
	touch $@

# Regenerate both locks from requirements.in and requirements-dev.in (pinned, with hashes).
# `make lock UPGRADE=1` also moves every pin to the newest version the .in files allow.
lock: $(VENV)/.dev
	$(BIN)/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras $(if $(UPGRADE),--upgrade) \
		-o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --allow-unsafe --generate-hashes --strip-extras $(if $(UPGRADE),--upgrade) \
		-o requirements-dev.txt requirements-dev.in

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/dist/app.js: node_modules/.installed $(wildcard static/src/*.js)
	npm run --silent build

frontend: static/dist/app.js

clean:
	rm -rf $(VENV) node_modules static/dist .mypy_cache .ruff_cache .pytest_cache
