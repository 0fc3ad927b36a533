# zeroserve: `make demo` runs the main job end to end; `make test` sets up and runs the tests.
# Both create or reuse .venv (Python 3.11) and install the pinned stack in one pip resolve.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zeroserve-installed
export ZEROSERVE_DATA_DIR ?= $(if $(wildcard ../shared/data/course),$(abspath ../shared/data/course),data)

.PHONY: venv demo test test-unit check format bench soak clean lock

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[test]"
	@$(PY) -c "import numpy, sys; sys.exit(numpy.__version__.startswith('1.') is False)" || \
		(echo "numpy 2 found in .venv: the Triton Python backend needs numpy < 2" && exit 1)
	@touch $(STAMP)

venv: $(STAMP)

## Resolve the stack afresh and record the versions in constraints.txt.
lock:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable ".[test]"
	$(PY) -m pip freeze --exclude-editable > constraints.txt
	@touch $(STAMP)

demo: venv
	$(PY) -m zeroserve.app.demo

test: venv
	$(PY) -m pytest

## The fast tier for the edit-test loop: no server, no real training (under a minute here).
test-unit: venv
	$(PY) -m pytest tests/unit

## Lint, format check and type check (what CI runs before the tests).
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Apply the formatter and the safe lint fixes.
format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv
	$(PY) -m zeroserve.bench

## Sustained load on the running server (`zeroserve serve --detach` first): SOAK_SECONDS (600),
## SOAK_CONCURRENCY (32), SOAK_MODEL (cnn_mnist). Not part of test or bench.
soak: venv
	$(PY) -m zeroserve.client.soak

clean:
	rm -rf artifacts reports .pytest_cache build *.egg-info
	find model_repository -mindepth 1 ! -name README.md -exec rm -rf {} +
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
	-$(VENV)/bin/zeroserve stop --all >/dev/null 2>&1 || true
