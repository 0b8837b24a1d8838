# samestream: every target a newcomer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
USE_CASES ?= fraud loan store
USE_CASE ?= fraud
DATA_DIR ?= data
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export SAMESTREAM_KAFKA_BOOTSTRAP ?= 127.0.0.1:9092

.PHONY: help venv tools train simulate materialize test test-fast soak serve features shadow ui notebook \
        kafka-up kafka-down bench lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(PYTHON) -m uv venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create .venv with the project and its tools

simulate: venv ## Simulate event files for USE_CASES that have none yet (delete data/<use case> to redo)
	@set -e; for uc in $(USE_CASES); do \
	  [ -d "$(DATA_DIR)/$$uc" ] || $(BIN)/samestream simulate $$uc --data-dir $(DATA_DIR); \
	done

materialize: simulate ## Replay the event files through the features into DuckDB
	@set -e; for uc in $(USE_CASES); do $(BIN)/samestream materialize $$uc --data-dir $(DATA_DIR); done

train: materialize ## Set up, simulate, materialize, train and register models (no broker needed)
	@set -e; for uc in $(USE_CASES); do $(BIN)/samestream train $$uc --data-dir $(DATA_DIR); done

tools:
	@command -v kcat >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq kcat >/dev/null) || echo "kcat not installed: the kcat interop test needs it"; }
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) || echo "chromium not installed: the MLflow UI browser test needs chromium and chromium-driver"; }

test: venv tools kafka-up ## Run every test, Kafka ones included (starts the local broker)
	$(BIN)/python -m pytest -q

soak: venv tools kafka-up ## Fault tests under load: a scorer replica killed, the broker restarted (CI runs it)
	$(BIN)/python -m pytest -q -m soak

test-fast: venv ## Run the fast unit tests only (seconds, no broker)
	$(BIN)/python -m pytest -q -m "not slow and not kafka"

kafka-up: ## Start the local single-node Kafka broker (KRaft) on 127.0.0.1:9092
	bash kafka/kafka.sh up

kafka-down: ## Stop the local Kafka broker
	bash kafka/kafka.sh down

features: venv ## Run the live feature process on Kafka
	$(BIN)/samestream features $(USE_CASE)

serve: venv ## Run the live scorer (champion) on Kafka
	$(BIN)/samestream serve $(USE_CASE)

shadow: venv ## Run the shadow-scoring harness (challengers) on Kafka
	$(BIN)/samestream shadow $(USE_CASE)

ui: venv ## MLflow UI on http://127.0.0.1:5000 over the store `make train` wrote
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

notebook: venv ## JupyterLab on 127.0.0.1 with the project's environment as kernel
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

bench: venv kafka-up ## Measure throughput and latency; writes BENCHMARKS.md
	$(BIN)/python bench/run.py

lint: venv ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy features training serving duckdb_tables.py

clean: ## Remove generated data, stores and the local broker's data
	rm -rf $(DATA_DIR) mlflow.db mlartifacts mlruns state
	bash kafka/kafka.sh reset
