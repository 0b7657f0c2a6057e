# opswatch: `make run` (the main job) and `make test` (everything the tests need, then the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := deploy/local/kafka.sh
WITH_KAFKA := deploy/local/with-kafka.sh
export OPSWATCH_PYTHON := $(abspath $(BIN)/python)

.PHONY: run test setup lint golden kafka-up kafka-down test-unit test-integration test-postgres test-kafka-security check-deploy chaos bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
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

# The alert store on a real PostgreSQL 15 (Debian's package, installed when missing,
# started by the tests on a free port and stopped after): the store, API and delivery
# tests, migrations, and two alerting processes sharing it through a kill -9.
test-postgres: $(STAMP)
	$(BIN)/python -m pytest -m postgres tests/unit tests/contract tests/postgres

# The pipeline end to end over SASL_SSL (SCRAM-SHA-512), and a wrong password, an
# untrusted CA and a wrong mechanism each ending every command with one message, and
# mutual TLS, on a broker of their own with SASL_SSL and SSL listeners (started and
# stopped by the tests).
test-kafka-security: $(STAMP)
	$(BIN)/python -m pytest tests/security -p no:cacheprovider

# Dashboards against a real Prometheus, rules with promtool, the Helm chart with
# helm lint, helm template and kubeconform, the compose file and the Dockerfile.
check-deploy: $(STAMP)
	bash $(WITH_KAFKA) $(BIN)/python -m pytest tests/deploy

# The fault tests: kills, a rebalance, poison, ingest kills and a broker restart,
# on a broker of their own (started and killed by the tests), seeded by
# OPSWATCH_CHAOS_SEED; a summary line per test at the end.
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos -p no:cacheprovider

# Every golden alert stream (tests/golden: the classic scenarios and a replay),
# about 10 minutes; `make test` runs three of them.
golden: $(STAMP)
	OPSWATCH_GOLDEN=all $(BIN)/python -m pytest tests/golden

# Throughput, latency and memory against the local broker (a few minutes), each
# beside the machine's limit from the same run; the figures also in bench.json.
bench: $(STAMP)
	bash $(WITH_KAFKA) $(BIN)/opswatch bench --json bench.json

# Everything: lint; the tests that only compute (unit, contract, three goldens) on
# every core (pytest-xdist); then the rest (integration, deploy, PostgreSQL,
# security, chaos) against the real broker, stopped afterwards only if this target
# started it, a file per core at a time: each test has topics of its own, and the
# security file and each of the two chaos files start a broker of their own on free
# ports. In both, the files whose tests are marked longest (`seconds`) start first.
CPU_TESTS := tests/unit tests/contract tests/golden
test: $(STAMP) lint
	$(BIN)/python -m pytest -n auto --dist worksteal $(CPU_TESTS)
	bash $(WITH_KAFKA) $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder tests $(CPU_TESTS:%=--ignore=%)

clean:
	rm -rf $(VENV) .opswatch bench.json *.db *.db-shm *.db-wal .pytest_cache .mypy_cache .ruff_cache
