# mdh: every target creates the virtual environment first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.mdh/dagster

.PHONY: setup demo test bench ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dagster,test]"
	touch $(STAMP)

demo: setup
	$(BIN)/mdh demo

# Two workers, each taking whole test files (module fixtures such as the demo run once);
# the 25 slowest tests are listed at the end.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

bench: setup
	$(BIN)/python -m benchmarks.run

ui: setup
	$(BIN)/python -m mdh_assets.runs  # dagster.yaml for this environment (MDH_DAGSTER_POSTGRES_URL)
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf .mdh
