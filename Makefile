# The whole developer loop. `make help` lists the targets.
# `make demo` and `make test` each do all their set-up (a virtualenv in .venv) on a fresh machine.

VENV ?= .venv
PY := $(VENV)/bin/python
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml pyproject.toml
PYTEST_ARGS ?=

.PHONY: help system-deps install demo test test-rust test-python test-postgres test-bench bench bench-servers clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

system-deps: ## the Debian packages the tests need (Apache for mod_wsgi); installs only what is missing
	.ci/system-deps

# system-deps first (mod_wsgi builds against apache2-dev), without forcing a rebuild of .venv.
$(VENV)/.installed: $(RUST_SOURCES) | system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	.ci/apache-access $(PY)
	touch $@

install: $(VENV)/.installed ## create .venv and build multicore (Rust + Python) into it

demo: install ## run the example project on SQLite under gunicorn, patched and not
	$(PY) example_project/demo.py

test: install test-rust test-bench test-python test-postgres ## run every test (Rust, benchmark smoke, Python on SQLite and PostgreSQL)

test-rust: ## the engine's own tests (no Python)
	cargo test -p multicore-engine --lib --tests --quiet

test-python: install ## the Python suite on SQLite
	MULTICORE_TEST_DB=sqlite $(PY) -m pytest $(PYTEST_ARGS)

DB_TESTS := tests/django tests/drf tests/servers tests/batch tests/test_request.py

test-postgres: install ## the database suites again on PostgreSQL (127.0.0.1:5432); they fail if it is down
	MULTICORE_TEST_DB=postgres $(PY) -m pytest $(DB_TESTS) $(PYTEST_ARGS)

test-bench: install ## the benchmark's smoke run: it still works (its figures are not measurements)
	@$(PY) benchmarks/core.py --quick > $(VENV)/bench-smoke.log 2>&1 \
		&& echo "benchmark smoke run: ok" || { cat $(VENV)/bench-smoke.log; exit 1; }

bench: install ## the core benchmark against multiprocessing, concurrent.futures and loky
	$(PY) benchmarks/core.py

bench-servers: install ## the DRF list patch at 1,000 rows under gunicorn, uWSGI, mod_wsgi and granian
	$(PY) benchmarks/servers.py

clean: ## remove build output and the virtualenv
	rm -rf $(VENV) target example_project/db.sqlite3
