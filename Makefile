# wrenmq — `make run` starts the broker on embedded defaults, `make test` runs every check.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := mosquitto mosquitto-clients openssl
MQTTLOAD_DIR ?= ../shared/tools/mqttload
BENCH_BROKER_ARGS ?=
BENCH_PERSISTENCE_ARGS ?=
BENCH_CLIENT_ARGS ?=
GMQTT_VERSION ?= 0.8.0

.PHONY: run test lint typecheck unit integration bench bench-broker bench-persistence bench-client gmqtt debs venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the integration tests talk to (real peers); installed only when missing.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: $(STAMP)
	$(BIN)/wrenmq broker

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks || true

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/fuzz tests/conformance

integration: $(STAMP) debs
	$(BIN)/pytest -q tests/integration

test: $(STAMP) debs
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(BIN)/pytest -q -p no:cacheprovider tests

bench: $(STAMP) debs gmqtt
	$(BIN)/python benchmarks/codec.py
	$(BIN)/python benchmarks/client.py $(BENCH_CLIENT_ARGS)
	$(BIN)/python benchmarks/broker.py --mqttload-dir $(MQTTLOAD_DIR) $(BENCH_BROKER_ARGS)
	$(BIN)/python benchmarks/persistence.py --mqttload-dir $(MQTTLOAD_DIR) $(BENCH_PERSISTENCE_ARGS)

# wrenmq's Client vs paho-mqtt vs gmqtt publishing to one Mosquitto, QoS 0 and 1;
# e.g. make bench-client BENCH_CLIENT_ARGS="--repeat 5 --json .bench/client.json"
bench-client: $(STAMP) debs gmqtt
	$(BIN)/python benchmarks/client.py $(BENCH_CLIENT_ARGS)

# gmqtt is only benchmarked against, never a wrenmq dependency: into .venv when missing.
gmqtt: $(STAMP)
	@$(BIN)/python -c 'import gmqtt' 2>/dev/null || $(BIN)/pip install -q 'gmqtt==$(GMQTT_VERSION)'

# wrenmq vs Mosquitto vs amqtt under mqttload (builds it in .bench/, amqtt in .venv-amqtt);
# e.g. make bench-broker BENCH_BROKER_ARGS="--repeat 3 --json .bench/broker.json"
bench-broker: $(STAMP) debs
	$(BIN)/python benchmarks/broker.py --mqttload-dir $(MQTTLOAD_DIR) $(BENCH_BROKER_ARGS)

# QoS 1 throughput and offline queues: wrenmq in memory / durability none, periodic, ack vs
# Mosquitto with persistence; e.g. make bench-persistence BENCH_PERSISTENCE_ARGS="--repeat 3"
bench-persistence: $(STAMP) debs
	$(BIN)/python benchmarks/persistence.py --mqttload-dir $(MQTTLOAD_DIR) $(BENCH_PERSISTENCE_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
