# The two commands of the README: `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TARGET ?= duckdb

.PHONY: demo test lint bench clean test-orchestration orchestration-constraints

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m connector.demo --target $(TARGET)

# Three workers on two cores: much of the suite waits on Postgres, dbt, subprocesses
# and the emulator, so a third worker fills the waits (two left a third of the CPU idle).
# worksteal: a worker that runs out of tests takes half of another's queue (with the
# default chunks, the e2e tests collected last kept one worker busy for minutes while
# the others were idle).
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 3 --dist worksteal

# The Airflow and Dagster examples (examples/orchestration) run by the real libraries, in
# a venv of their own: in .venv they would add ~2 min of install and several minutes to
# the suite's 15 (docs/orchestration.md). .ci/run runs this after `make test`.
ORCH_VENV := .venv-orchestration
ORCH_REQS := examples/orchestration/requirements.txt
ORCH_PINS := examples/orchestration/constraints.txt

$(ORCH_VENV)/.installed: pyproject.toml $(ORCH_REQS) $(ORCH_PINS)
	test -x $(ORCH_VENV)/bin/python || $(PYTHON) -m venv $(ORCH_VENV)
	$(ORCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c $(ORCH_PINS) -e '.[dev]' -r $(ORCH_REQS)
	touch $@

test-orchestration: $(ORCH_VENV)/.installed
	$(ORCH_VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 tests/orchestration

# Re-pin constraints.txt after changing requirements.txt: resolve afresh in a scratch venv.
orchestration-constraints:
	rm -rf $(ORCH_VENV)-pins && $(PYTHON) -m venv $(ORCH_VENV)-pins
	$(ORCH_VENV)-pins/bin/python -m pip install --quiet --disable-pip-version-check \
		-e '.[dev]' -r $(ORCH_REQS)
	sed -n '/^#/p' $(ORCH_PINS) > $(ORCH_PINS).new
	$(ORCH_VENV)-pins/bin/python -m pip freeze --exclude-editable --disable-pip-version-check \
		| grep -v '^batch-enrich' >> $(ORCH_PINS).new
	mv $(ORCH_PINS).new $(ORCH_PINS) && rm -rf $(ORCH_VENV)-pins

lint: $(STAMP)
	$(BIN)/ruff check connector tests bench
	$(BIN)/ruff format --check connector tests bench
	$(BIN)/mypy --strict connector

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(ORCH_VENV) target logs dbt_packages demo.duckdb
