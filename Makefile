# social-triage: every target creates the venv (.venv/) when it is missing.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
DURATION ?= 0
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (tests/conftest.py groups them: one module per worker at a time, the
# multi-process pipelines one after another); TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 3
SEED ?= 7
SEEDS ?=

.PHONY: help venv lock sbom audit tools proto proto-check kafka-jars model demo test test-unit test-integration lint up down \
        kafka-up kafka-down fuzz train eval parity eval-crisis bench profile bench-e2e bench-scale capacity manifests deploy-check clean chaos \
        test-classify-grow

help:
	@echo "make demo [DURATION=60]  run the whole pipeline on the embedded sample (stops after DURATION s)"
	@echo "make test                unit + integration + end-to-end tests (real Kafka)"
	@echo "make up / make down      start / stop broker + services in the background (logs in run/)"
	@echo "make kafka-up / kafka-down   the broker alone (127.0.0.1:9092)"
	@echo "make train / eval / bench    fit the heads / print evaluation tables / print benchmarks"
	@echo "make parity              every encoder runtime vs fp32 torch (labels, macro-F1), recorded for TRIAGE_RUNTIME=auto"
	@echo "make profile [PROFILE_TWEETS=2000 PROFILE_ENV='TRIAGE_RUNTIME=onnx']  py-spy profile of triage score: share per part"
	@echo "make bench-e2e [E2E_RATES=50,100,200,400 E2E_SECONDS=60]  the whole pipeline at offered rates: latency, outage trigger"
	@echo "make capacity [CAPACITY_FROM=.cache/bench/classify-latest.json]  pods, partitions, HPA for 1M and 100M mentions/day"
	@echo "make bench-scale [SCALE_REPLICAS=1,2,4 SCALE_MENTIONS=3000]  classify replicas side by side: mentions/s, lag"
	@echo "make fuzz                hostile-input fuzz of every ingest endpoint (100,000 requests, status table)"
	@echo "make eval-crisis [SEED=7 | SEEDS=7,8,9]  crisis scenarios: generator-score table + real-text table (real model)"
	@echo "                         + CrisisLex streams in event time (cached scores; score once: nice -n 10 $(PY) -m bench.crisislex_streams --score)"
	@echo "make chaos [CHAOS_RUNS=3]    kill -9 / broker crash / pager 500s under 2,000 mentions, invariants table"
	@echo "make lock                regenerate the hashed lock files from pyproject.toml (LOCK_ARGS=--upgrade to move pins)"
	@echo "make sbom                CycloneDX SBOMs of the three lock files -> $(SBOM_DIR)/"
	@echo "make audit               pip-audit over the lock files (needs PyPI's per-release JSON API or OSV; not in lint)"
	@echo "make lint                ruff + mypy + stale-protobuf check + import rules: cycles, cross-service (tools/check_imports.py)"

# The venv installs exactly requirements.lock (every package pinned, every file checked against its sha256),
# then the project itself without resolving anything (its build backend, setuptools + wheel, is in the lock
# too, hence --no-build-isolation). A changed lock or pyproject.toml rebuilds it.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# ------------------------------------------------------------------ supply chain
# The release tools live in their own throwaway venv (never in .venv, never in an image), pinned here.
TOOLS := .cache/tools
TOOLS_STAMP = $(TOOLS)/.installed-uv$(UV_VERSION)-audit$(PIP_AUDIT_VERSION)-cdx$(CYCLONEDX_VERSION)
UV_VERSION := 0.13.9
PIP_AUDIT_VERSION := 2.10.1
CYCLONEDX_VERSION := 7.5.0
SBOM_DIR ?= build/sbom
$(TOOLS_STAMP):
	rm -rf $(TOOLS) && python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION) pip-audit==$(PIP_AUDIT_VERSION) cyclonedx-bom==$(CYCLONEDX_VERSION)
	@touch $@

tools: $(TOOLS_STAMP)

# Three locks, all resolved for CPython 3.11 on x86_64 manylinux (the images' platform) with a sha256 for every
# file: requirements.lock = core + model + dev + the build backend (make, CI); requirements-classify.lock = core +
# model (the classify image); requirements-slim.lock = core only (the ingest/router/console images: no torch).
# The two image locks are constrained by requirements.lock, so a package has one version everywhere
# (tests/unit/test_lock.py). uv keeps the pins already in a lock; LOCK_ARGS=--upgrade moves them.
# torch from PyPI depends on the CUDA wheels (nvidia-*); where the PyTorch index is reachable,
# CLASSIFY_LOCK_ARGS="--torch-backend cpu" would lock the CPU build for the classify image (not tried: only PyPI
# was reachable when these locks were made).
LOCK_ARGS ?=
CLASSIFY_LOCK_ARGS ?=
UV_COMPILE = $(TOOLS)/bin/uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make lock' $(LOCK_ARGS)
lock: $(TOOLS_STAMP)
	python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
		| $(UV_COMPILE) - --extra model --extra dev -o requirements.lock
	$(UV_COMPILE) --extra model -c requirements.lock $(CLASSIFY_LOCK_ARGS) -o requirements-classify.lock
	$(UV_COMPILE) -c requirements.lock -o requirements-slim.lock

# CycloneDX 1.6 JSON, one per lock (the dev/CI set and what each image installs): every package with its purl
# and the sha256 of each of its files. build/ is gitignored.
sbom: $(TOOLS_STAMP)
	@mkdir -p $(SBOM_DIR)
	for lock in requirements requirements-slim requirements-classify; do \
		PYTHONWARNINGS=ignore::UserWarning $(TOOLS)/bin/cyclonedx-py requirements $$lock.lock \
			--pyproject pyproject.toml --output-reproducible --of JSON -o $(SBOM_DIR)/$$lock.cdx.json || exit 1; \
		echo "wrote $(SBOM_DIR)/$$lock.cdx.json"; \
	done

# Known vulnerabilities (PyPI's per-release JSON, which carries the PyPA advisory database; AUDIT_ARGS="-s osv"
# asks OSV instead) for every pinned package of requirements.lock (the image locks are subsets of it). --strict: a package that could not be looked up
# fails the audit instead of being skipped, since without it pip-audit prints "No known vulnerabilities found"
# and exits 0 having checked nothing. Needs the network, so it is not part of `make lint`.
AUDIT_ARGS ?=
audit: $(TOOLS_STAMP)
	$(TOOLS)/bin/pip-audit --strict --require-hashes --disable-pip --progress-spinner off $(AUDIT_ARGS) \
		-r requirements.lock

# Generated protobuf code is rebuilt whenever a .proto is newer than it.
services/common/pb/triage/v1/triage_pb2.py: $(STAMP) $(wildcard protos/triage/v1/*.proto)
	$(PY) -m services.devtools.protobuild

proto: services/common/pb/triage/v1/triage_pb2.py

proto-check: proto
	$(PY) -m services.devtools.protobuild --check

kafka-jars: $(STAMP)
	$(PY) -c "from services.devtools.kafka_broker import ensure_jars; print(ensure_jars())"

model: $(STAMP) proto
	$(PY) -m services.cli model build

demo: $(STAMP) proto kafka-jars model
	$(PY) -m services.cli demo --duration $(DURATION)

test: $(STAMP) proto kafka-jars model
	$(PY) -m services.devtools.protobuild --check
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS)

# The classify partition grow on the real broker (tests/integration/test_classify_partition_growth_broker.py):
# out of `make test` since it lost a mention after a grow (fixed in the fetch guard, `watch_flow`; docs/scaling.md).
test-classify-grow: $(STAMP) proto kafka-jars model
	TRIAGE_TEST_CLASSIFY_GROW=1 $(PY) -m pytest tests/integration/test_classify_partition_growth_broker.py -q $(PYTEST_ARGS)

# Hostile-input fuzz of every ingest endpoint on a real broker, against `triage ingest` as its own
# process: 25,000 requests per property (100,000 in all, FUZZ_MIN_REQUESTS checked), each property
# split over FUZZ_WORKERS processes and bounded by FUZZ_SECONDS (per worker); prints the status table
# and ingest's RSS before/during/after (after = once the FUZZ_DEDUPE_WINDOW-second dedupe window
# expired); fails on any 5xx, on produced != accepted or on fewer requests than asked. `make test`
# runs the same properties with 400 examples each, in one process.
FUZZ_EXAMPLES ?= 25000
FUZZ_SECONDS ?= 540
FUZZ_MIN_REQUESTS ?= 100000
FUZZ_DEDUPE_WINDOW ?= 30
FUZZ_WORKERS ?= 2
fuzz: $(STAMP) proto kafka-jars
	INGEST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) INGEST_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		INGEST_FUZZ_MIN_REQUESTS=$(FUZZ_MIN_REQUESTS) INGEST_FUZZ_DEDUPE_WINDOW=$(FUZZ_DEDUPE_WINDOW) \
		INGEST_FUZZ_WORKERS=$(FUZZ_WORKERS) \
		$(PY) -m pytest tests/integration/test_ingest_fuzz.py -q $(PYTEST_ARGS)

# The chaos suite (issue 11, services/devtools/chaos.py): broker + ingest/classify/router processes, kill -9 of
# each and of the broker, PagerDuty answering 500 for 20 s; prints the table and fails on a broken invariant.
# CHAOS_RUNS full runs in a row (each on a fresh broker); `make test` runs the short variant (tests/e2e).
CHAOS_RUNS ?= 3
CHAOS_SCENARIO ?= full
chaos: $(STAMP) proto kafka-jars model
	$(PY) -m services.devtools.chaos --scenario $(CHAOS_SCENARIO) --runs $(CHAOS_RUNS)

test-unit: $(STAMP) proto
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) proto kafka-jars model
	$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

lint: $(STAMP) proto-check
	$(PY) -m ruff check services tests demo bench tools/check_imports.py
	$(PY) -m mypy services
	$(PY) tools/check_imports.py

up: $(STAMP) proto kafka-jars model
	$(PY) -m services.devtools.localrun up

down: $(STAMP)
	$(PY) -m services.devtools.localrun down

kafka-up: $(STAMP) kafka-jars
	$(PY) -m services.devtools.kafka_broker up --port 9092

kafka-down: $(STAMP)
	$(PY) -m services.devtools.kafka_broker down

train: $(STAMP) proto model
	$(PY) -m services.cli train

eval: $(STAMP) proto model
	$(PY) -m services.cli eval

# every encoder runtime (torch, ONNX Runtime; fp32, bf16, int8) against fp32 torch: label agreement and
# macro-F1 checks, recorded for TRIAGE_RUNTIME=auto (which never chooses a runtime that failed them)
parity: $(STAMP) proto model
	$(PY) -m services.cli model parity

eval-crisis: $(STAMP) proto model
	$(PY) -m bench.eval_crisis --seed $(SEED) $(if $(SEEDS),--seeds $(SEEDS))

# Throughput per runtime/precision, the naive baseline, cold start per runtime in fresh processes (BENCH_COLD_CONFIGS,
# BENCH_COLD_REPEATS), then ingest. Figures also go to $(BENCH_OUT)/classify-<time>.json (+ classify-latest.json),
# with the CPU's model name and instruction sets; `make capacity` reads them.
BENCH_OUT ?= .cache/bench
export BENCH_OUT
bench: $(STAMP) proto model kafka-jars
	$(PY) -m bench.classify
	$(PY) -m bench.ingest

# py-spy profile of `triage score` on real tweets (bench/profile.py): speedscope file under $(BENCH_OUT),
# share of samples in tokeniser / language ID / model forward / heads / protobuf / other
PROFILE_TWEETS ?= 2000
PROFILE_ENV ?=
profile: $(STAMP) proto model
	$(PY) -m bench.profile --tweets $(PROFILE_TWEETS) --out $(BENCH_OUT) $(foreach e,$(PROFILE_ENV),--env $(e))

# The whole pipeline (broker + ingest/classify/router processes) at offered rates, E2E_RATES mentions/s for
# E2E_SECONDS each: ingest->routed p50/p95/p99, backlog, outage burst -> PagerDuty-shaped trigger delay, RSS per
# service. The default is issue 27's four-rate table (about 8-14 minutes with the drains); E2E_SECONDS=15 (or
# E2E_RATES=50 E2E_SECONDS=15) is the short variant for checking the tooling, not for figures: the outage burst
# starts 20 s into each phase, so phases under ~35 s measure no trigger. Figures also go to $(BENCH_OUT)/e2e-*.json.
# E2E_PROFILE=FILE also records the classify worker with py-spy during the phases and prints where its time goes.
E2E_RATES ?= 50,100,200,400
E2E_SECONDS ?= 60
E2E_PROFILE ?=
bench-e2e: $(STAMP) proto model kafka-jars
	$(PY) -m bench.e2e --rates $(E2E_RATES) --seconds $(E2E_SECONDS) $(if $(E2E_PROFILE),--profile $(E2E_PROFILE))

# Classify scale-out (issue 12, bench/scale.py): SCALE_REPLICAS classify processes (1 torch thread each, crisis
# detection off) per run over the same 6-partition mentions.raw on a private broker, a fresh consumer group per
# run; SCALE_MENTIONS real tweets per run: mentions/s, speed-up vs 1 replica, partitions per replica, lag over time.
SCALE_REPLICAS ?= 1,2,4
SCALE_MENTIONS ?= 3000
bench-scale: $(STAMP) proto model kafka-jars
	$(PY) -m bench.scale --replicas $(SCALE_REPLICAS) --mentions $(SCALE_MENTIONS)

# Capacity plan (bench/capacity.py, docs/scaling.md "Capacity plan") from the figures `make bench` wrote:
# mentions/s per core per runtime, CPU-seconds per 1,000 mentions, pods for 1M and 100M mentions/day with a 10x
# crisis peak, partitions and HPA settings. CAPACITY_ARGS passes more (--pod-cores 2 --utilisation 0.7 ...).
CAPACITY_FROM ?= $(BENCH_OUT)/classify-latest.json
CAPACITY_ARGS ?=
capacity: $(STAMP)
	$(PY) -m bench.capacity --from $(CAPACITY_FROM) $(CAPACITY_ARGS)

manifests: $(STAMP) proto
	$(PY) deploy/k8s/generate.py

deploy-check: $(STAMP) proto
	$(PY) deploy/k8s/generate.py --check
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/tests/rules_test.yml
	$(PY) -m pytest tests/unit/test_deploy.py tests/unit/test_prometheus_rules.py $(PYTEST_ARGS)

clean:
	rm -rf run .pytest_cache .mypy_cache .ruff_cache
