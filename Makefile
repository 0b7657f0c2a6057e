# opswatch: `make run` (the main job) and `make test` (everything the tests need, then the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := deploy/local/kafka.sh
export OPSWATCH_PYTHON := $(abspath $(BIN)/python)

.PHONY: run test setup lint kafka-up kafka-down test-unit test-integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/opswatch run

lint: $(STAMP)
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy

kafka-up: $(STAMP)
	@if [ -n "$$OPSWATCH_KAFKA_BOOTSTRAP" ]; then echo "using the broker at $$OPSWATCH_KAFKA_BOOTSTRAP"; else bash $(KAFKA) up; fi

kafka-down:
	@if [ -z "$$OPSWATCH_KAFKA_BOOTSTRAP" ]; then bash $(KAFKA) down; fi

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/contract

test-integration: kafka-up
	OPSWATCH_KAFKA_BOOTSTRAP=$${OPSWATCH_KAFKA_BOOTSTRAP:-127.0.0.1:9092} $(BIN)/python -m pytest tests/integration

# The whole suite against the real broker; the broker is stopped afterwards
# only if this target started it.
test: $(STAMP) lint
	@started=0; \
	if [ -z "$$OPSWATCH_KAFKA_BOOTSTRAP" ]; then \
	  if ! bash $(KAFKA) status >/dev/null 2>&1; then started=1; fi; \
	  bash $(KAFKA) up || exit 1; \
	fi; \
	OPSWATCH_KAFKA_BOOTSTRAP=$${OPSWATCH_KAFKA_BOOTSTRAP:-127.0.0.1:9092} $(BIN)/python -m pytest tests; \
	rc=$$?; \
	if [ $$started = 1 ]; then bash $(KAFKA) down; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) .opswatch *.db *.db-shm *.db-wal .pytest_cache .mypy_cache .ruff_cache
