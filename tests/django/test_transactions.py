"""Inside atomic(): workers cannot see uncommitted writes, and the database helpers say so."""

from __future__ import annotations

import os
import warnings

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

import multicore
from multicore.exceptions import MulticoreWarning
from multicore.utils import in_atomic_block, keyset_ranges, parallel_safe, ranges
from tests.testapp import tasks
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _count_in_worker() -> int:
    task = multicore.Task()
    task.run(tasks.count_items)
    return task.get(timeout=30)[0]


def test_task_works_inside_atomic(multicore_db):
    with transaction.atomic():
        task = multicore.Task()
        assert task is not None
        task.run(os.getpid)
        assert task.get(timeout=30)[0] != os.getpid()


def test_workers_cannot_see_uncommitted_writes(multicore_db):
    Item.objects.create(name="committed")
    with transaction.atomic():
        Item.objects.create(name="uncommitted")
        assert Item.objects.count() == 2
        assert _count_in_worker() == 1
    assert _count_in_worker() == 2


def test_in_atomic_block_and_parallel_safe(multicore_db):
    qs = Item.objects.all()
    assert not in_atomic_block() and parallel_safe(qs) and parallel_safe(using="default")
    with transaction.atomic():
        assert in_atomic_block("default")
        assert parallel_safe(qs) is False
        with (
            override_settings(MULTICORE={"in-atomic-block": "raise"}),
            pytest.raises(TransactionManagementError, match="uncommitted writes"),
        ):
            parallel_safe(qs)


@pytest.mark.parametrize(
    "helper", [lambda qs: list(ranges(qs)), lambda qs: keyset_ranges(qs)], ids=["ranges", "keyset_ranges"]
)
def test_range_helpers_warn_inside_atomic(multicore_db, helper):
    Item.objects.bulk_create(Item(name=str(i)) for i in range(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert helper(Item.objects.all())  # no warning outside atomic()
    with transaction.atomic():
        with pytest.warns(MulticoreWarning, match="parallel_safe") as record:
            assert helper(Item.objects.all())
        assert record[0].filename == __file__  # points at the caller
        with (
            override_settings(MULTICORE={"in-atomic-block": "raise"}),
            pytest.raises(TransactionManagementError, match="cannot see"),
        ):
            helper(Item.objects.all())


def test_ranges_of_plain_sequences_ignore_transactions(multicore_db):
    with transaction.atomic(), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(ranges(range(10), number_of_workers=2)) == [(0, 5), (5, 10)]


def test_sequential_fallback_pattern_returns_the_right_data(multicore_db):
    """The documented pattern: parallel when safe, the same function in-process otherwise."""
    Item.objects.bulk_create(Item(name=f"n{i}") for i in range(20))

    def names():
        qs = Item.objects.all()
        task = multicore.Task() if parallel_safe(qs) else None
        if task is None:
            return tasks.item_names(0, qs.count())
        for start, end in ranges(qs):
            task.run(tasks.item_names, start, end)
        return [n for chunk in task.get(timeout=30) for n in chunk]

    assert len(names()) == 20
    with transaction.atomic():
        Item.objects.create(name="new")
        assert names()[-1] == "new"  # the sequential path sees the uncommitted row
