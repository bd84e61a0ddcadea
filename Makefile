# agentbus — the two commands: `make demo` and `make test` (plus `make bench`).
# Everything installs itself: a virtualenv in .venv, and Debian's prometheus (promtool)
# and redis-server via apt-get when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
ARGS   ?=

.PHONY: demo test bench lint typecheck pytest system-deps install-demo install-dev install-bench dashboards clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[dev,bench,dashboards]'
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install-dev: $(VENV)/.dev-installed
install-bench: $(VENV)/.dev-installed

# Debian packages the tests start for real: Prometheus + promtool, Redis.
system-deps:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 \
	    || ! command -v redis-server >/dev/null 2>&1; then \
	  echo "installing Debian packages prometheus redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus redis-server >/dev/null; \
	  systemctl disable --now prometheus redis-server >/dev/null 2>&1 || true; \
	fi

demo: install-demo
	$(BIN)/agentbus demo $(ARGS)

lint: install-dev
	$(BIN)/ruff check agentbus middleware exporters tests benchmarks grafana

typecheck: install-dev
	$(BIN)/mypy

pytest: install-dev system-deps
	$(BIN)/python -m pytest -q $(ARGS)

test: lint typecheck pytest

bench: install-bench
	$(BIN)/python -m benchmarks $(ARGS)

dashboards: install-dev
	$(BIN)/python -m grafana.generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
