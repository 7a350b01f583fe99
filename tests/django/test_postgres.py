"""PostgreSQL: one persistent connection per worker, replaced when the server drops it.

Runs only with MULTICORE_TEST_DB=postgres (see conftest.py) and fails if the server is unreachable.
"""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection, connections

import multicore
from tests.support import wait_until, worker_pids
from tests.testapp import tasks

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _backend_pids(calls: int) -> list[tuple[int, int]]:
    task = multicore.Task()
    assert task is not None
    for _ in range(calls):
        task.run(tasks.backend_pid)
    return task.get(timeout=60)


def _parent_backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@contextlib.contextmanager
def _database_setting(key, value):
    """Changes a DATABASES["default"] option for workers forked inside the block."""
    db = connections.settings["default"]
    old = db[key]
    db[key] = value
    multicore.shutdown()
    try:
        yield
    finally:
        db[key] = old
        multicore.shutdown()


def test_running_on_postgresql():
    assert connection.vendor == "postgresql"
    assert _parent_backend_pid() > 0


def test_each_worker_keeps_one_connection_and_survives_terminated_backends(multicore_db):
    parent_backend = _parent_backend_pid()
    results = _backend_pids(300)
    backends = {backend for _, backend in results}
    workers = {pid for pid, _ in results}
    assert 1 <= len(backends) <= len(worker_pids()) == 2
    assert len(backends) == len(workers)  # one connection per worker, kept across calls
    assert parent_backend not in backends

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(backends)])
        assert all(row[0] for row in cursor.fetchall())
        # Termination is asynchronous: wait until the server has dropped the sessions.
        assert wait_until(lambda: not _alive(cursor, backends), timeout=10)

    after = _backend_pids(100)  # CONN_HEALTH_CHECKS: each worker notices and reconnects
    new_backends = {backend for _, backend in after}
    assert not new_backends & backends
    assert 1 <= len(new_backends) <= 2
    assert parent_backend not in new_backends

    assert _parent_backend_pid() == parent_backend  # the parent's session was never touched
    assert {pid for pid, _ in after} <= set(worker_pids())


def _alive(cursor, backends) -> bool:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])", [sorted(backends)])
    return cursor.fetchone()[0] > 0


def test_without_health_checks_a_dropped_connection_fails_one_call_then_is_replaced(multicore_db):
    with _database_setting("CONN_HEALTH_CHECKS", False):
        task = multicore.Task()
        for _ in range(2):  # one call per worker is not guaranteed; run a few and kill them all
            task.run(tasks.backend_pid)
        first = {backend for _, backend in task.get(timeout=30)}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(first)])
            assert wait_until(lambda: not _alive(cursor, first), timeout=10)
        outcomes = []
        for _ in range(20):
            task = multicore.Task()
            task.run(tasks.backend_pid)
            try:
                outcomes.append(task.get(timeout=30)[0][1])
            except Exception as exc:  # noqa: BLE001 - the dead connection's first use, once per worker at most
                outcomes.append(type(exc).__name__)
        errors = [o for o in outcomes if isinstance(o, str)]
        assert set(errors) <= {"OperationalError", "InterfaceError"}
        assert 1 <= len(errors) <= len(first)  # each dead connection fails its first call only
        assert all(isinstance(o, int) and o not in first for o in outcomes[-5:])


def test_conn_max_age_zero_gives_each_call_a_fresh_connection(multicore_db):
    with _database_setting("CONN_MAX_AGE", 0):
        backends = {backend for _, backend in _backend_pids(12)}
    assert len(backends) > 2  # more connections than workers: closed after each call
