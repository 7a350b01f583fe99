"""Real gunicorn serving the example project on 127.0.0.1 (a random free port): SQLite in a
temporary directory, or with MULTICORE_TEST_DB=postgres a database of its own on the local
PostgreSQL server (dropped afterwards). Every server is stopped in a ``finally``."""

from __future__ import annotations

import os

import pytest

from tests.gunicorn.example import runner
from tests.support import ON_POSTGRES

PG_SERVER = "postgresql://root@127.0.0.1:5432/postgres"


def _pg(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def example_env(tmp_path_factory):
    directory = tmp_path_factory.mktemp("example")
    if ON_POSTGRES:
        name = f"multicore_gunicorn_{os.getpid()}"
        _pg(f"DROP DATABASE IF EXISTS {name}")
        _pg(f"CREATE DATABASE {name}")
        env = runner.project_env(DATABASE_URL=f"postgres://root@127.0.0.1:5432/{name}")
    else:
        env = runner.project_env(EXAMPLE_SQLITE_NAME=str(directory / "db.sqlite3"))
        env.pop("DATABASE_URL", None)
    runner.prepare_database(env, products=400)
    env["MULTICORE_MIN_IDLE_CPUS"] = "0"  # engage even while other programs load the machine
    env["GUNICORN_LOG"] = str(directory / "gunicorn.log")
    yield env
    if ON_POSTGRES:
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def serve(example_env, tmp_path):
    """serve(**options) starts a gunicorn; all of them are stopped after the test."""
    servers = []

    def start(**options):
        server = runner.Gunicorn(example_env, log_file=str(tmp_path / f"gunicorn-{len(servers)}.log"), **options)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        leftovers = [pid for server in servers for pid in server.seen if runner.alive(pid)]
        assert not leftovers, f"processes left behind: {leftovers}"
