"""Django on the dask workers: set up by the client's worker plugin from DJANGO_SETTINGS_MODULE,
pointed at the test database, one persistent connection per worker, checked around each call."""

from __future__ import annotations

import pytest
from django.db import connection

import multicore
from multicore.utils import ranges
from tests.dask import helpers
from tests.testapp import tasks
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _run(fn, *args, calls=1):
    task = multicore.Task()
    for _ in range(calls):
        task.run(fn, *args)
    return task.get(timeout=60)


def test_workers_use_the_test_database(dask_backend):
    name = str(connection.settings_dict["NAME"])
    assert "test" in name
    assert _run(tasks.database_name, calls=4) == [name] * 4


def test_workers_see_committed_test_data(dask_backend):
    Item.objects.bulk_create(Item(name=f"item-{i}", group=i % 3) for i in range(50))
    assert _run(tasks.count_items, calls=2) == [50, 50]
    task = multicore.Task()
    for start, end in ranges(Item.objects.all()):
        task.run(tasks.item_names, start, end)
    names = [name for chunk in task.get(timeout=60) for name in chunk]
    assert names == [f"item-{i}" for i in range(50)]


def test_each_worker_keeps_one_connection_across_calls(dask_backend):
    seen: dict[int, set[int]] = {}
    for _ in range(3):
        for pid, conn_id in _run(tasks.connection_id, calls=6):
            seen.setdefault(pid, set()).add(conn_id)
    assert seen and all(len(ids) == 1 for ids in seen.values()), seen


def test_connections_follow_conn_max_age(dask_backend):
    """close_old_connections() runs around each call: with CONN_MAX_AGE=0 the connection is
    closed after every call; with persistent connections it stays open."""
    _run(helpers.connection_was_open, calls=4)
    assert any(was_open for _, was_open in _run(helpers.connection_was_open, calls=4))
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0  # shipped to the workers with the next Task()
    try:
        results = _run(helpers.connection_was_open, calls=6)
        assert not any(was_open for _, was_open in results), results
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved


@pytest.mark.postgres
def test_a_broken_connection_is_replaced(dask_backend):
    first = dict(_run(tasks.backend_pid, calls=6))
    with connection.cursor() as cursor:
        for backend in first.values():
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    second = dict(_run(tasks.backend_pid, calls=6))
    assert second and not set(second.values()) & set(first.values())
    assert _run(tasks.count_items) == [0]


@pytest.mark.postgres
def test_shutdown_closes_the_workers_connections(dask_backend):
    backends = set(dict(_run(tasks.backend_pid, calls=6)).values())
    multicore.shutdown()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(backends)])
        assert cursor.fetchall() == []
