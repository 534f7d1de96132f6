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

.PHONY: run test lint format serve demo clean translations i18n-extract i18n-update

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

$(VENV)/.dev-installed: $(BIN)/activate requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Languages: the catalogues in kapjournal/translations (the .po files are committed; the .mo
# files Flask-Babel reads are compiled from them here, never committed).
TRANSLATIONS := kapjournal/translations

## Compile the translation catalogues (.po → .mo).
translations: $(BIN)/activate
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

## Extract the strings marked for translation into messages.pot (then `make i18n-update`): the
## templates, the Python code and the scripts (`t()` and `tn()` in static/**.js, see babel.cfg).
i18n-extract: $(BIN)/activate
	PYTHONPATH=. $(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location \
		--sort-output -o $(TRANSLATIONS)/messages.pot .

## Merge messages.pot into each language's .po (new strings arrive untranslated, for a translator).
i18n-update: i18n-extract
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) \
		--no-fuzzy-matching --ignore-obsolete

## Serve the app on the embedded SQLite database (development secrets made in instance/).
run: $(BIN)/activate translations
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app run --host $(HOST) --port $(PORT)

## Install everything, then lint and run the whole suite (in PYTEST_WORKERS processes).
test: $(VENV)/.dev-installed translations
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
serve: $(BIN)/activate translations
	$(BIN)/flask --app app db upgrade
	$(BIN)/gunicorn --workers $${WEB_CONCURRENCY:-4} --worker-class sync --bind $(HOST):$(PORT) app:app

demo: $(BIN)/activate translations
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
