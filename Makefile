# reportgen: two commands on a fresh machine.
#   make demo   set up .venv and write reports/quickstart/report.html from examples/quickstart/audit.yaml
#   make test   set up .venv and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU wheel by default; set TORCH_SPEC for a CUDA build (e.g. TORCH_SPEC="torch==2.13.0" with your index).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup system demo test test-fast bench clean

setup: $(STAMP) system

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test,lime]"
	touch $(STAMP)

# Debian packages: Chromium (browser tests, figure export) and poppler (PDF read-back).
system:
	@if ! command -v chromium >/dev/null || ! command -v pdftoppm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils fonts-dejavu-core >/dev/null; \
	  else echo "note: install chromium and poppler-utils for browser and PDF tests"; fi; \
	fi

demo: setup
	$(VENV)/bin/reportgen run examples/quickstart/audit.yaml -o reports/quickstart

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser and not server"

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports .reportgen-cache tests/actual
