# Every target a user needs; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# The first interpreter that is 3.11 or newer.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11+ not found (install python3.11 or set PYTHON=...)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,rocksdb,s3]'
	@touch $@

# The AsyncAPI parser that validates schemas/asyncapi.yaml in the tests (Node.js, npm).
ASYNCAPI := tools/asyncapi/node_modules/.package-lock.json
$(ASYNCAPI): tools/asyncapi/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found (install nodejs and npm)" >&2; exit 1; }
	npm ci --prefix tools/asyncapi --no-audit --no-fund --silent
	@touch $@

# kustomize, built from the API version pinned in tools/kustomize/go.mod (Go); tests/deploy renders with it.
KUSTOMIZE := tools/kustomize/bin/kustomize
$(KUSTOMIZE): tools/kustomize/go.mod tools/kustomize/go.sum tools/kustomize/main.go
	@command -v go >/dev/null 2>&1 || { echo "error: go not found (install Go 1.26+)" >&2; exit 1; }
	cd tools/kustomize && go build -o bin/kustomize .
# compose-go (pinned in tools/compose/go.mod): loads docker-compose.yml as `docker compose` does.
COMPOSE_CHECK := tools/compose/bin/compose-check
$(COMPOSE_CHECK): tools/compose/go.mod tools/compose/go.sum tools/compose/main.go
	cd tools/compose && go build -o bin/compose-check .

.PHONY: install
install: $(BIN)/.installed $(ASYNCAPI) $(KUSTOMIZE) $(COMPOSE_CHECK) ## Create .venv and install the project with its dev tools

.PHONY: run
run: install ## Start Kafka, the registry, the ingress and the processors in the foreground (Ctrl-C stops all)
	$(BIN)/onoff-bridge run

.PHONY: test
test: install lint typecheck ## Lint, type-check, then run every test (starts the local stack and the secured cluster when needed)
	$(BIN)/pytest -v

.PHONY: test-cluster
test-cluster: install ## Run the cluster tests only (starts the secured 3-broker SASL_SSL cluster)
	$(BIN)/pytest -v -m cluster tests/cluster

.PHONY: unit
unit: install ## Run the unit tests only (no I/O)
	$(BIN)/pytest tests/unit

.PHONY: lint
lint: install ## ruff format --check and ruff check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

.PHONY: format
format: install ## Reformat and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: typecheck
typecheck: install ## mypy --strict on the packages; tests with check_untyped_defs
	$(BIN)/mypy
	$(BIN)/mypy tests

.PHONY: deploy-check validate-deploy
deploy-check: install ## Validate the Dockerfile, compose file, Kubernetes manifests, alerts and dashboard (offline; make test runs it too)
	$(BIN)/pytest -v tests/deploy
validate-deploy: deploy-check

.PHONY: stack-up
stack-up: install ## Start the local Kafka and registry (no Docker) and write var/stack.env
	$(BIN)/onoff-bridge stack up

.PHONY: stack-down
stack-down: install ## Stop the local Kafka and registry
	$(BIN)/onoff-bridge stack down

.PHONY: stack-up-secure
stack-up-secure: install ## Start the secured cluster: 3 SASL_SSL brokers and a registry with basic auth
	$(BIN)/onoff-bridge stack up --secure

.PHONY: stack-down-secure
stack-down-secure: install ## Stop the secured cluster
	$(BIN)/onoff-bridge stack down --secure

.PHONY: stack-status
stack-status: install ## Show what the local stack runs and where
	$(BIN)/onoff-bridge stack status

# wrk, the HTTP load generator of bench-ingress: a Debian/Ubuntu package, installed
# with apt-get when missing (as root, else through sudo); elsewhere, install it yourself.
.PHONY: wrk
wrk: ## Install wrk (bench-ingress's load generator) with apt-get if it is missing
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "wrk not found: installing it with apt-get (the Debian/Ubuntu package wrk)"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  { command -v apt-get >/dev/null 2>&1 && $$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; } \
	  || { echo "error: could not install wrk; install it yourself (apt-get install wrk, brew install wrk)" >&2; exit 1; }; }

# vegeta (pinned), bench-ingress's open-loop load generator: requests at a constant rate,
# for the latency at half the measured rate. Built with Go, as the install's Go tools are.
VEGETA := var/bench/bin/vegeta
$(VEGETA):
	@command -v go >/dev/null 2>&1 || { echo "error: go not found (install Go 1.26+)" >&2; exit 1; }
	GOBIN=$(abspath var/bench/bin) go install github.com/tsenart/vegeta/v12@v12.13.0

.PHONY: vegeta
vegeta: $(VEGETA) ## Build vegeta (bench-ingress's constant-rate load generator) with go install

.PHONY: bench-ingress
bench-ingress: install wrk $(VEGETA) ## Benchmark one ingress process on the local Kafka (saves bench/results/)
	BENCH_VEGETA=$(VEGETA) $(BIN)/python -m bench.ingress

.PHONY: bench-dedupe
bench-dedupe: install ## Benchmark one dedupe worker catching up (BENCH_DELIVERIES, BENCH_STORE)
	$(BIN)/python -m bench.dedupe

.PHONY: bench-metrics
bench-metrics: install ## Benchmark one metrics worker catching up (BENCH_DELIVERIES)
	$(BIN)/python -m bench.metrics

# The quix-streams peer of bench-peers, in a venv of its own: a contender, not a dependency.
QUIX_VENV := var/bench/quix-venv
$(QUIX_VENV)/.installed: bench/peers/requirements.txt
	@test -n "$(PYTHON)" || { echo "error: Python 3.11+ not found (install python3.11 or set PYTHON=...)" >&2; exit 1; }
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	@touch $@

.PHONY: bench-peers
bench-peers: install $(QUIX_VENV)/.installed ## Dedupe (both stores) beside Faust's no-op, a quix-streams peer and metrics, same input (BENCH_DELIVERIES, BENCH_RSS_CALLS)
	BENCH_QUIX_PYTHON=$(QUIX_VENV)/bin/python $(BIN)/python -m bench.peers.run

.PHONY: bench-latency
bench-latency: install ## End-to-end latency, ingress 200 to onoff.calls and to the metrics (BENCH_RATE, BENCH_DURATION_S)
	$(BIN)/python -m bench.latency

.PHONY: bench-recovery
bench-recovery: install ## Each processor restarted over 200,000 changelog records, 3 runs: records/s, seconds to ready (saves bench/results/recovery-*.json)
	$(BIN)/python -m bench.recovery

.PHONY: soak
soak: install ## 10 min at 200 calls/s against `onoff-bridge run` with a 100,000-call user and poison calls, then verify (SOAK_* variables)
	$(BIN)/python -m bench.soak

.PHONY: bench-report
bench-report: install ## Write docs/performance.md, its charts and the README's table from bench/results/
	$(BIN)/python -m bench.report

.PHONY: bench
bench: bench-ingress bench-dedupe bench-metrics bench-latency bench-recovery bench-peers ## Run every benchmark, then the report
	BENCH_STORE=rocksdb $(BIN)/python -m bench.dedupe
	$(BIN)/python -m bench.report

.PHONY: clean
clean: ## Remove the virtualenv, caches and var/ (stop the stack first)
	-$(BIN)/onoff-bridge stack down
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
