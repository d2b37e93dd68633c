# MEV Risk Stream. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 9092
# command:Debian package that provides it. java and mvn fetch and run the local Kafka broker;
# openssl makes the notify tests' TLS certificate; kcat, Prometheus (promtool), Alertmanager (amtool)
# and Chromium are the e2e peers. A test needing one of them fails in CI (CI=true) when it is absent.
# Pango (a shared library, found with ldconfig) lets WeasyPrint print the daily report to PDF; the
# report test turns the PDF into PNG and text with poppler-utils.
SYSTEM_DEPS ?= java:default-jre-headless mvn:maven openssl:openssl kcat:kcat prometheus:prometheus \
	promtool:prometheus prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
	chromium:chromium libpango-1.0.so.0:libpango-1.0-0 libpangoft2-1.0.so.0:libpangoft2-1.0-0 \
	pdftoppm:poppler-utils pdftotext:poppler-utils

.PHONY: help install system-deps broker broker-stop topics worker simulate demo test test-unit test-integration lint types check bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev dependencies

system-deps: ## check the programs the broker and tests need (Java, Maven, openssl, kcat, Prometheus, Alertmanager, Chromium, Pango, poppler); install the missing ones when root, else fail
	@set -euo pipefail; missing=""; \
	present() { case "$$1" in lib*.so*) ldconfig -p | grep -qF "$$1";; *) command -v "$$1" >/dev/null 2>&1;; esac; }; \
	for dep in $(SYSTEM_DEPS); do cmd="$${dep%%:*}"; pkg="$${dep#*:}"; \
	  if ! present "$$cmd"; then \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "error: missing Debian packages:$$missing (run: sudo make system-deps)" >&2; exit 1; fi; \
	echo "installing Debian packages:$$missing"; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	for dep in $(SYSTEM_DEPS); do cmd="$${dep%%:*}"; \
	  present "$$cmd" || { echo "error: $$cmd still missing after apt-get install" >&2; exit 1; }; \
	done

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
	@KAFKA_PORT=$(KAFKA_PORT) bash deploy/demo.sh

TEST_PROCESSES ?= 2
test: install system-deps ## the whole suite and the packages' doctests against a real Kafka broker per process (started and stopped by the tests); TEST_PROCESSES=1 runs it in one process
	$(BIN)/python -m pytest --durations=30 $(if $(filter-out 1,$(TEST_PROCESSES)),-n $(TEST_PROCESSES) --dist loadfile)

test-unit: install ## pure-core tests and the packages' doctests (no broker)
	$(BIN)/python -m pytest tests/unit agents streams schemas

lint: install ## ruff
	$(BIN)/ruff check .

types: install ## mypy on the typed packages (agents/ and streams/, config in pyproject.toml)
	$(BIN)/mypy

check: lint types test ## lint, types, then the whole suite (what CI runs)

bench: topics ## benchmarks (key=value lines)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean: broker-stop ## stop the broker and remove caches (keeps the Kafka jars)
	rm -rf .cache/kafka/data-* .cache/kafka/secured-* .cache/worker .pytest_cache
