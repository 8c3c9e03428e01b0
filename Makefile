# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv test lint fmt demo bench airflow pins clean

help:
	@echo "make test    ruff + the whole pytest suite (embedded PostgreSQL unless L1NDA_TEST_DATABASE_URL is set)"
	@echo "make demo    the end-to-end story against the simulator, on embedded defaults"
	@echo "make bench   benchmarks that print numbers"
	@echo "make airflow the demo's world with the Airflow UI on localhost:8080 (login admin / l1nda-demo)"
	@echo "make lint    ruff only;  make fmt: ruff --fix"
	@echo "make pins    refresh requirements*.txt after changing a top-level dependency"
	@echo "make clean   remove .venv and var/"
	@echo "make venv    create .venv and install the exact pins (done by the others when needed)"

venv: $(STAMP)

# Reinstall only when a pin file or the package metadata changed.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m l1nda_sync.demo

bench: $(STAMP)
	$(BIN)/python -m l1nda_sync.bench

airflow: $(STAMP)
	$(BIN)/python -m l1nda_sync.demo --airflow

# Refresh requirements*.txt after changing a top-level dependency (needs the package index).
pins:
	rm -rf .venv-pins && $(PYTHON) -m venv .venv-pins
	.venv-pins/bin/pip install --quiet -e . && .venv-pins/bin/pip freeze --exclude-editable > requirements.txt.new
	rm -rf .venv-pins
	@echo "review requirements.txt.new, keep the header, then replace requirements.txt"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
