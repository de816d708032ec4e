# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.zebra-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test install lint format clean setup

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	# torch comes from this machine's disk (pinned in pyproject.toml)
	$(BIN)/pip install --quiet -e ".[cpu,dev,ray]"
	touch $(STAMP)

install: $(STAMP)

## Set everything up and start the main job at once; the default knowledge base builds in the background
## (progress on the page and in `zebra setup --status`; questions wait for it, image findings do not).
run: $(STAMP)
	$(BIN)/zebra setup --background
	$(BIN)/zebra serve --host $(HOST) --port $(PORT)

## Run the whole test suite (PostgreSQL tests run when ZEBRA_TEST_PG_URL is set; .ci/run sets it).
test: $(STAMP)
	$(BIN)/ruff check .
	# the floors of docs/architecture.md (.importlinter): no module imports a higher floor, lazily or not
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
