# MEV Risk Stream. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 9092
SYSTEM_PACKAGES := kcat prometheus prometheus-alertmanager chromium

.PHONY: help install system-deps broker broker-stop topics worker simulate demo test test-unit test-integration lint check bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev dependencies

system-deps: ## install the Debian packages the e2e tests use (kcat, Prometheus, Alertmanager, Chromium) when root
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || echo "warning: could not install$$missing"; \
	  else echo "note: not root, tests needing$$missing will skip"; fi; \
	fi

broker: install ## fetch (Maven Central) and start the local Kafka broker on 127.0.0.1:$(KAFKA_PORT)
	$(BIN)/mevrisk broker start --port $(KAFKA_PORT)

broker-stop: ## stop the local Kafka broker
	$(BIN)/mevrisk broker stop --port $(KAFKA_PORT)

topics: broker ## create the topics (idempotent)
	$(BIN)/mevrisk topics create

worker: topics ## run one worker in the foreground
	$(BIN)/mevrisk worker -l warn

demo: install ## fresh local Kafka, one worker and the simulator with an incident every minute; Ctrl-C stops all
	$(BIN)/mevrisk broker stop --port $(KAFKA_PORT)
	rm -rf .cache/kafka/data-$(KAFKA_PORT) .cache/worker  # demo data is not kept between runs
	$(BIN)/mevrisk broker start --port $(KAFKA_PORT)
	$(BIN)/mevrisk topics create
	@bash deploy/demo.sh

test: install system-deps ## the whole suite against a real Kafka broker (started and stopped by the tests)
	$(BIN)/python -m pytest tests

test-unit: install ## pure-core tests only (no broker)
	$(BIN)/python -m pytest tests/unit

lint: install ## ruff
	$(BIN)/ruff check .

check: lint test ## lint and the whole suite

bench: topics ## benchmarks (key=value lines)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean: broker-stop ## stop the broker and remove caches (keeps the Kafka jars)
	rm -rf .cache/kafka/data-* .cache/worker .pytest_cache
