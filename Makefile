# bearwatch: `make demo` runs the demo park, `make test` runs the whole suite.
# Both create .venv and install what they need; re-running skips finished steps.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SYSTEM_DEPS := $(VENV)/.system-deps
PYTEST_ARGS ?=
# pytest-xdist workers: most tests wait on subprocesses, servers and a browser, so two
# workers on a 2-core machine roughly halve the suite's time. Tests of one file share a
# worker (--dist loadfile: module fixtures such as the built wheel are made once).
TEST_WORKERS ?= 2

.PHONY: demo test lint install system-deps clean-demo

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

# Debian packages the tests use (real ffmpeg, RTSP server, browser, Prometheus).
$(SYSTEM_DEPS): scripts/install-system-deps.sh | $(INSTALLED)
	bash scripts/install-system-deps.sh
	touch $@

system-deps: $(SYSTEM_DEPS)

demo: $(INSTALLED)
	$(VENV)/bin/bearwatch demo

# Lint and type checks (settings in pyproject.toml); any finding fails `make test` before pytest starts.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(INSTALLED) lint $(SYSTEM_DEPS)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

clean-demo:
	rm -rf bearwatch-data
