# Two entry points for a fresh clone: `make study` (environment + `dvc repro`) and `make test`
# (environment + the test suite). The environment is built once, again only when requirements.txt changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: env study test

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# BUSI_SOURCE=/path/to/Dataset_BUSI_with_GT.zip make study   uses a local copy instead of the download.
study: env
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: env
	$(BIN)/python -m pytest
