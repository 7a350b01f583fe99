"""Workers use the test database, see committed test data, and never disturb the parent's connection."""

from __future__ import annotations

import os

import pytest
from django.db import connection

import multicore
from multicore.utils import ranges
from tests.testapp import tasks
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _run(fn, *args, calls=1):
    task = multicore.Task()
    assert task is not None
    for _ in range(calls):
        task.run(fn, *args)
    return task.get(timeout=30)


def test_workers_use_the_test_database(multicore_db):
    assert _run(tasks.database_name, calls=4) == [str(connection.settings_dict["NAME"])] * 4


def test_workers_see_committed_test_data(multicore_db):
    Item.objects.bulk_create(Item(name=f"item-{i}", group=i % 3) for i in range(50))
    assert _run(tasks.count_items, calls=2) == [50, 50]
    task = multicore.Task()
    for start, end in ranges(Item.objects.all()):
        task.run(tasks.item_names, start, end)
    names = [name for chunk in task.get(timeout=30) for name in chunk]
    assert names == [f"item-{i}" for i in range(50)]


def test_each_worker_keeps_its_connection_across_calls(multicore_db):
    Item.objects.create(name="x")
    results = _run(tasks.connection_id, calls=40)
    by_worker: dict[int, set[int]] = {}
    for pid, conn in results:
        by_worker.setdefault(pid, set()).add(conn)
    assert os.getpid() not in by_worker
    assert all(len(conns) == 1 for conns in by_worker.values()), by_worker


def test_parent_connection_works_after_pool_start_and_tasks(multicore_db):
    multicore.shutdown()
    Item.objects.create(name="before")  # the parent's connection is open when the pool forks
    raw = connection.connection
    assert raw is not None
    assert _run(tasks.count_items, calls=6) == [1] * 6
    Item.objects.create(name="after")
    assert connection.connection is raw  # same driver connection, still usable
    assert Item.objects.count() == 2
    assert _run(tasks.count_items, calls=2) == [2, 2]
