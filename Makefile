# Verbs a newcomer looks for. Every target bootstraps what it needs first.
PY := .venv/bin/python
export UNDERSTANDING_CACHE ?= $(HOME)/.cache/understanding

.PHONY: setup run test test-fast test-under-load bench eval-data lint format imports protos check-protos docs soak worker kafka-up kafka-down qdrant-up qdrant-down clean

setup:
	@bash scripts/bootstrap.sh

run: setup  ## run the service with embedded defaults (no Kafka or Qdrant server needed)
	$(PY) -m understanding serve

test: setup  ## the full test suite (starts a real Kafka broker if none is running)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

test-under-load: setup  ## the full test suite with every core kept busy by stress-ng, as on a shared CI machine
	bash scripts/under_load.sh $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

worker: setup  ## a job worker for the Kafka job backend (UNDERSTANDING_JOB_BACKEND=kafka)
	$(PY) -m understanding worker

soak: setup  ## long fuzzing (50x) + a 30-minute mixed load test with memory drift (~50 min)
	UNDERSTANDING_FUZZ_SCALE=50 $(PY) -m pytest -q -p no:cacheprovider tests/unit/media/test_fuzz_decoders.py tests/unit/api/test_fuzz_requests.py
	$(PY) benchmarks/load_test.py --soak

bench: setup eval-data  ## every benchmark script, one summary table
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

eval-data: setup  ## public multilingual evaluation data from Debian packages (cached; the multilingual benchmarks read it)
	$(PY) scripts/fetch_eval_data.py

protos: setup
	$(PY) scripts/gen_protos.py

check-protos: setup  ## buf lint + breaking check, Go and Java stubs compiled (tools cached outside the repo)
	bash scripts/check_protos.sh

docs: setup  ## regenerate docs/api.md (from proto comments) and docs/configuration.md (from config.py)
	$(PY) scripts/gen_api_docs.py
	$(PY) scripts/gen_config_docs.py

lint: setup  ## ruff (rules in pyproject.toml), ruff format --check, mypy --strict, import-linter layer contracts
	$(PY) -m ruff check understanding clients tests benchmarks scripts
	$(PY) -m ruff format --check understanding clients tests benchmarks scripts
	$(PY) -m mypy understanding clients/python/understanding_client
	PYTHONPATH=$(CURDIR) .venv/bin/lint-imports

format: setup  ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix understanding clients tests benchmarks scripts
	$(PY) -m ruff format understanding clients tests benchmarks scripts

imports: setup  ## the import graph between the project's modules (see scripts/import_graph.py)
	$(PY) scripts/import_graph.py

kafka-up:
	@bash scripts/kafka.sh up

kafka-down:
	@bash scripts/kafka.sh down

clean:
	rm -rf understanding/v1 .pytest_cache clients/python/build clients/python/understanding clients/python/*.egg-info

.PHONY: qdrant-up qdrant-down
qdrant-up:  ## a local Qdrant server on 127.0.0.1:16333 (gRPC 16334) with fresh storage (scripts/qdrant.sh)
	@bash scripts/qdrant.sh up

qdrant-down:
	@bash scripts/qdrant.sh down
