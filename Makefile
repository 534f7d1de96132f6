# kapjournal — the two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# `make test` runs the suite in this many pytest-xdist processes (each with its own database,
# servers and Chromium); PYTEST_WORKERS=0 runs it serially in one process. More pytest options
# go in PYTEST_ARGS, e.g. `make test PYTEST_WORKERS=0 PYTEST_ARGS="-x tests/test_auth.py"`.
PYTEST_WORKERS ?= 2

.PHONY: run test lint format serve demo clean

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

$(VENV)/.dev-installed: $(BIN)/activate requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## Serve the app on the embedded SQLite database (development secrets made in instance/).
run: $(BIN)/activate
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app run --host $(HOST) --port $(PORT)

## Install everything, then lint and run the whole suite (in PYTEST_WORKERS processes).
test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Production-style server: gunicorn with sync workers (see README).
serve: $(BIN)/activate
	$(BIN)/flask --app app db upgrade
	$(BIN)/gunicorn --workers $${WEB_CONCURRENCY:-4} --worker-class sync --bind $(HOST):$(PORT) app:app

demo: $(BIN)/activate
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
