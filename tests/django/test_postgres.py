"""PostgreSQL: one persistent connection per worker, replaced when the server drops it.

Runs only with MULTICORE_TEST_DB=postgres (see conftest.py) and fails if the server is unreachable.
"""

from __future__ import annotations

import contextlib
import time

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


def _terminate(backends) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(backends)])
        assert all(row[0] for row in cursor.fetchall())
        # Termination is asynchronous: wait until the server has dropped the sessions.
        assert wait_until(lambda: not _alive(cursor, backends), timeout=10)


def _alive(cursor, backends) -> bool:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])", [sorted(backends)])
    return cursor.fetchone()[0] > 0


@contextlib.contextmanager
def _django_defaults():
    """Django's own defaults for requests: a connection per request, no health checks."""
    with _database_setting("CONN_MAX_AGE", 0), _database_setting("CONN_HEALTH_CHECKS", False):
        yield


def test_with_django_defaults_a_worker_keeps_one_backend_across_200_calls(multicore_db):
    with _django_defaults():
        parent_backend = _parent_backend_pid()
        results = _backend_pids(200)
        backends = {backend for _, backend in results}
        workers = {pid for pid, _ in results}
        assert 1 <= len(backends) <= len(worker_pids()) == 2
        assert len(backends) == len(workers)  # one connection per worker, kept across calls
        for worker in workers:  # each worker's backend pid is the same on every call
            assert len({backend for pid, backend in results if pid == worker}) == 1
        assert parent_backend not in backends

        _terminate(backends)
        # Health checks are on in workers whatever CONN_HEALTH_CHECKS says: no call fails.
        after = _backend_pids(100)
        new_backends = {backend for _, backend in after}
        assert not new_backends & backends
        assert 1 <= len(new_backends) <= 2
        assert parent_backend not in new_backends
        assert _parent_backend_pid() == parent_backend  # the parent's session was never touched
        assert {pid for pid, _ in after} <= set(worker_pids())


def test_worker_conn_max_age_zero_gives_each_call_a_fresh_connection(multicore_db, settings):
    settings.MULTICORE = {"worker-conn-max-age": 0}
    multicore.shutdown()  # workers read it when they start
    try:
        backends = {backend for _, backend in _backend_pids(12)}
    finally:
        multicore.shutdown()
    assert len(backends) > 2  # more connections than workers: closed after each call


def test_worker_conn_max_age_replaces_an_older_connection(multicore_db, settings):
    settings.MULTICORE = {"worker-conn-max-age": 0.5}
    multicore.shutdown()
    try:
        first = {backend for _, backend in _backend_pids(10)}
        time.sleep(0.6)  # every connection is now older than 0.5 s
        second = {backend for _, backend in _backend_pids(10)}
    finally:
        multicore.shutdown()
    assert not first & second
