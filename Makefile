# The whole developer loop. `make help` lists the targets.
# `make demo` and `make test` each do all their set-up (a virtualenv in .venv) on a fresh machine.

VENV ?= .venv
PY := $(VENV)/bin/python
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml pyproject.toml
PYTEST_ARGS ?=

.PHONY: help system-deps install demo lint test test-rust test-core test-python test-postgres test-matrix test-bench bench bench-servers bench-async bench-dask clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

system-deps: ## the Debian packages the tests need (Apache for mod_wsgi, debootstrap); installs only what is missing
	.ci/system-deps

# system-deps first (mod_wsgi builds against apache2-dev), without forcing a rebuild of .venv.
$(VENV)/.installed: $(RUST_SOURCES) | system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,lint]'
	.ci/apache-access $(PY)
	touch $@

install: $(VENV)/.installed ## create .venv and build multicore (Rust + Python) into it

demo: install ## run the example project on SQLite under gunicorn (patched and not) and uvicorn (an async view)
	$(PY) example_project/demo.py

lint: install ## ruff (check and format), mypy, stubtest for _core.pyi, cargo fmt and clippy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest multicore._core
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test: install test-rust test-bench test-core test-python test-postgres test-matrix ## run every test: on the host (Rust, benchmark smoke, the core without Django, Python on SQLite and PostgreSQL), then the Python suites on CPython 3.13/3.14 with Django 6.x (test-matrix)

test-rust: ## the engine's own tests (no Python)
	cargo test -p multicore-engine --lib --tests --quiet

CORE_TESTS := tests/core tests/faults
DB_TESTS := tests/django tests/drf tests/servers tests/batch
# The dask tests start real clusters (tests/dask/cluster.py); none may outlive them.
DASK_TESTS := tests/dask
NO_DASK_LEFT = @! pgrep -fa 'dask (scheduler|worker)' || { echo "dask processes survived the tests"; exit 1; }

test-core: install ## the Django-free core's tests with Django never imported (no pytest-django, no settings)
	$(PY) -m pytest -o addopts="-ra --strict-markers" -p no:django $(CORE_TESTS) $(CORE_ARGS)

test-python: install ## the Django suites and the dask cluster tests on SQLite (or the tests named in PYTEST_ARGS)
	MULTICORE_TEST_DB=sqlite $(PY) -m pytest $(if $(filter tests/%,$(PYTEST_ARGS)),,$(DB_TESTS) $(DASK_TESTS)) $(PYTEST_ARGS)
	$(NO_DASK_LEFT)

test-postgres: install ## the database suites again on PostgreSQL (127.0.0.1:5432); they fail if it is down
	MULTICORE_TEST_DB=postgres $(PY) -m pytest $(DB_TESTS) $(DASK_TESTS)/test_django.py $(DASK_TESTS)/test_batch.py $(PYTEST_ARGS)
	$(NO_DASK_LEFT)

test-matrix: ## the Python suites again on CPython 3.13 and 3.14 with Django 6.x, in cached Debian roots (docs/versions.md)
	CORE_TESTS="$(CORE_TESTS)" DB_TESTS="$(DB_TESTS)" DASK_TESTS="$(DASK_TESTS)" DASK_PG_TESTS="$(DASK_TESTS)/test_django.py" \
		PYTEST_ARGS="$(PYTEST_ARGS)" .ci/matrix $(MATRIX)

test-bench: install ## the benchmark's smoke run: it still works (its figures are not measurements)
	@$(PY) benchmarks/core.py --quick > $(VENV)/bench-smoke.log 2>&1 \
		&& echo "benchmark smoke run: ok" || { cat $(VENV)/bench-smoke.log; exit 1; }

bench: install ## the core benchmark against multiprocessing, concurrent.futures and loky
	$(PY) benchmarks/core.py

bench-async: install ## awaiting the pool (arun/aget) against run_in_executor, anyio.to_process and sync_to_async
	$(PY) benchmarks/async.py

bench-servers: install ## the DRF list patch at 1,000 rows under gunicorn, uWSGI, mod_wsgi and granian
	$(PY) benchmarks/servers.py
bench-dask: install ## the dask backend against the local pool and plain distributed (starts its own cluster)
	$(PY) benchmarks/dask.py

clean: ## remove build output and the virtualenv
	rm -rf $(VENV) target example_project/db.sqlite3
