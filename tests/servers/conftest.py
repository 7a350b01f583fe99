"""Real servers serving the example project on 127.0.0.1 (a random free port each): SQLite in a
temporary directory, or with MULTICORE_TEST_DB=postgres a database of its own on the local
PostgreSQL server (dropped afterwards). Every server is stopped in the fixture's teardown, which
then checks that nothing it ever started is left: no process, no multicore shared memory, no
listening port."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.servers.example import runner
from tests.support import ON_POSTGRES

PG_SERVER = "postgresql://root@127.0.0.1:5432/postgres"
HERE = Path(__file__).parent


def _pg(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def example_env():
    # Not under pytest's tmp_path (mode 700): Apache's daemon processes run as www-data.
    directory = tempfile.mkdtemp(prefix="multicore-servers-")
    os.chmod(directory, 0o777)
    if ON_POSTGRES:
        name = f"multicore_servers_{os.getpid()}"
        _pg(f"DROP DATABASE IF EXISTS {name}")
        _pg(f"CREATE DATABASE {name}")
        env = runner.project_env(DATABASE_URL=f"postgres://root@127.0.0.1:5432/{name}")
    else:
        env = runner.project_env(EXAMPLE_SQLITE_NAME=os.path.join(directory, "db.sqlite3"))
        env.pop("DATABASE_URL", None)
    runner.prepare_database(env, products=400)
    if not ON_POSTGRES:
        os.chmod(env["EXAMPLE_SQLITE_NAME"], 0o666)
    env["MULTICORE_MIN_IDLE_CPUS"] = "0"  # engage even while other programs load the machine
    env["MULTICORE_TEST_DIR"] = directory
    yield env
    if ON_POSTGRES:
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    shutil.rmtree(directory, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """A server test that runs out of time fails by an exception raised in the test (pytest-timeout's
    signal method), so the serve fixture still stops its servers: the thread method (the suite's
    default) ends the whole run with os._exit, and no teardown would kill what the test started."""
    for item in items:
        marker = item.get_closest_marker("timeout")
        if not item.path.is_relative_to(HERE) or (marker is not None and "method" in marker.kwargs):
            continue
        args, kwargs = (marker.args, marker.kwargs) if marker else ((), {})
        item.add_marker(pytest.mark.timeout(*args, **{**kwargs, "method": "signal"}), append=False)


def leftovers(servers) -> dict[str, object]:
    """What the stopped servers left: live processes (also any never seen in the tree, by
    session), mapped multicore memory, open ports."""
    pids = {pid for server in servers for pid in server.seen}
    pids |= {pid for server in servers if server.proc for pid in runner.session_members(server.proc.pid)}
    return {
        "processes": sorted(pid for pid in pids if runner.alive(pid)),
        "mapping a pool": sorted(pid for pid in pids if runner.control_regions(pid)),
        "ports still open": [server.port for server in servers if runner.port_open(server.port)],
    }


@pytest.fixture
def serve(example_env, tmp_path):
    """serve(name, **options) starts one of runner.SERVERS; all are stopped after the test."""
    servers = []

    def start(name: str = "gunicorn", env: dict | None = None, **options):
        cls = runner.SERVERS[name]
        if cls is runner.ModWsgi:
            root = tempfile.mkdtemp(prefix="apache-", dir=example_env["MULTICORE_TEST_DIR"])
            os.chmod(root, 0o755)
            options.setdefault("server_root", root)
        server = cls(env or example_env, log_file=str(tmp_path / f"{name}-{len(servers)}.log"), **options)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        left = leftovers(servers)
        assert not any(left.values()), f"left behind: {left}"
