# The two commands a newcomer runs: `make demo` and `make test`.
# Both create .venv (pinned torch/torchvision) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,export,video]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metaanchor demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

# The inner loop: everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests research benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs .pytest_cache
