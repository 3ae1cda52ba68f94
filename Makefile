# PatchLedger: two commands on a fresh machine (`make demo`, `make test`), plus the UI and benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.patchledger-installed

export DAGSTER_HOME := $(CURDIR)/.dagster
export PATCHLEDGER_ESTATE ?= $(CURDIR)/data/estate
export PATCHLEDGER_WAREHOUSE ?= $(CURDIR)/data/warehouse.duckdb
# The evidence packs go beside the warehouse (data/reports/) unless PATCHLEDGER_REPORTS says otherwise.

.PHONY: install demo test lint browser ui bench clean

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

# Exact versions come from requirements.lock; the project itself is installed editable so that
# sql/ and notebooks/ are read from the checkout.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: pipelines/config/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp pipelines/config/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install
	$(BIN)/patchledger demo

lint: install
	$(BIN)/ruff check pipelines assets tests
	$(BIN)/sqlfluff lint sql --disable-progress-bar

test: install lint browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The dashboard tests drive a real headless Chromium: installed here where apt-get can (as root,
# Debian/Ubuntu and CI); elsewhere those tests skip and say so.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	         apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	       else echo "Chromium is not installed and cannot be installed here: the dashboard browser tests will skip."; fi; }

ui: install
	$(BIN)/dg dev -w workspace.yaml

bench: install
	$(BIN)/python -m pipelines.bench

clean:
	rm -rf data reports .dagster
