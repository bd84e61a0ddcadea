# agentbus — the two commands: `make demo` and `make test` (plus `make bench`).
# Everything installs itself: a virtualenv in .venv (pinned by constraints.txt), and
# Debian's prometheus + promtool via apt-get when missing (python3-venv too, if the
# interpreter has no ensurepip).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIPI   := $(PIP) install -q -c constraints.txt
# apt-get as root, or through sudo when there is one.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo)
ARGS   ?=

.PHONY: demo test bench lint typecheck pytest system-deps install-demo install-dev install-bench dashboards clean

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing Debian package python3-venv (no ensurepip in $(PYTHON))"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIPI) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIPI) -e '.[dev,bench,dashboards]'
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install-dev: $(VENV)/.dev-installed
install-bench: $(VENV)/.dev-installed

# Debian packages the tests start for real: the Prometheus server and promtool.
system-deps:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  echo "installing Debian package prometheus (server + promtool)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus >/dev/null; \
	  $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	fi
	@command -v promtool >/dev/null 2>&1 || { echo "promtool is still missing: install Debian's prometheus package" >&2; exit 1; }

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
