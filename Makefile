# The two commands a newcomer runs: `make demo` and `make test`.
# Both create .venv on first use, with the exact versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt torch torchvision
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,export,video]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metaanchor demo --out runs/demo

# Two workers (pytest-xdist), each test file on one worker: about 10 minutes on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

# The inner loop: everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests research benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs .pytest_cache
