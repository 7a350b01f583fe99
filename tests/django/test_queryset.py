"""keyset_ranges(), keyset_filter() and stable_order(): every row exactly once, in order."""

from __future__ import annotations

import itertools

import pytest

import multicore
from multicore.utils import keyset_filter, keyset_ranges, ranges, stable_order
from tests.testapp import tasks
from tests.testapp.models import GroupOrderedItem, Item, UUIDItem

pytestmark = pytest.mark.django_db(transaction=True)


def _collect(bounds, model="Item"):
    task = multicore.Task()
    for lo, hi in bounds:
        task.run(tasks.keyset_pks, lo, hi, model)
    return [pk for chunk in task.get(timeout=30) for pk in chunk]


def test_keyset_ranges_cover_every_row_once_in_workers(multicore_db):
    Item.objects.bulk_create(Item(name=str(i), group=i % 7) for i in range(1003))
    Item.objects.filter(pk__in=list(Item.objects.values_list("pk", flat=True)[::10])).delete()  # gaps
    expected = list(Item.objects.order_by("pk").values_list("pk", flat=True))
    for workers in (1, 2, 3, 8):
        bounds = keyset_ranges(Item.objects.all(), number_of_workers=workers)
        assert len(bounds) == workers
        assert bounds[0][0] is None and bounds[-1][1] is None
        assert all(hi == next_lo for (_, hi), (next_lo, _) in itertools.pairwise(bounds))
        assert _collect(bounds) == expected
    sizes = [len(tasks.keyset_pks(lo, hi)) for lo, hi in keyset_ranges(Item.objects.all(), number_of_workers=3)]
    assert max(sizes) - min(sizes) <= len(expected) // 3  # balanced: the last may be shorter


def test_keyset_ranges_respect_filters_and_min_range_size(multicore_db):
    Item.objects.bulk_create(Item(name=str(i), group=i % 2) for i in range(100))
    odd = Item.objects.filter(group=1)
    bounds = keyset_ranges(odd, min_range_size=20, number_of_workers=8)
    assert len(bounds) == 3  # 50 rows in ranges of at least 20
    got = [pk for lo, hi in bounds for pk in keyset_filter(odd, lo, hi).values_list("pk", flat=True)]
    assert got == list(odd.order_by("pk").values_list("pk", flat=True))


def test_keyset_ranges_with_uuid_keys(multicore_db):
    UUIDItem.objects.bulk_create(UUIDItem(name=str(i)) for i in range(97))
    bounds = keyset_ranges(UUIDItem.objects.all(), number_of_workers=4)
    assert len(bounds) == 4
    got = _collect(bounds, model="UUIDItem")
    assert got == list(UUIDItem.objects.order_by("pk").values_list("pk", flat=True))


def test_keyset_ranges_of_an_empty_or_tiny_queryset(multicore_db):
    assert keyset_ranges(Item.objects.all()) == []
    Item.objects.create(name="one")
    assert keyset_ranges(Item.objects.all(), number_of_workers=4) == [(None, None)]


def test_keyset_ranges_rejects_bad_input(multicore_db):
    with pytest.raises(TypeError, match="unsliced"):
        keyset_ranges(Item.objects.all()[:10])
    with pytest.raises(TypeError, match="QuerySet"):
        keyset_ranges([1, 2, 3])
    with pytest.raises(ValueError, match="min_range_size"):
        keyset_ranges(Item.objects.all(), min_range_size=-1)
    with pytest.raises(ValueError, match="number_of_workers"):
        keyset_ranges(Item.objects.all(), number_of_workers=0)


def test_stable_order_adds_a_primary_key_tiebreak(multicore_db):
    assert stable_order(Item.objects.all()).query.order_by == ("pk",)
    assert stable_order(Item.objects.order_by("-group")).query.order_by == ("-group", "pk")
    assert stable_order(GroupOrderedItem.objects.all()).query.order_by == ("group", "pk")
    by_pk = Item.objects.order_by("-id")
    assert stable_order(by_pk) is by_pk
    with pytest.raises(ValueError, match="random"):
        stable_order(Item.objects.order_by("?"))


def test_slices_of_a_stably_ordered_queryset_cover_every_row_once(multicore_db):
    """Many ties in the ordering: the pk tiebreak makes every worker's slice agree."""
    Item.objects.bulk_create(Item(name=str(i), group=i % 3) for i in range(300))
    qs = stable_order(Item.objects.order_by("group"))
    chunks = [list(qs[start:end].values_list("pk", flat=True)) for start, end in ranges(qs, number_of_workers=7)]
    flat = [pk for chunk in chunks for pk in chunk]
    assert len(flat) == 300 and len(set(flat)) == 300
    assert flat == list(qs.values_list("pk", flat=True))
