"""Where the patch steps aside: DRF serves the list itself, with the same bytes, never an error."""

from __future__ import annotations

import pytest
from django.db import transaction
from rest_framework.utils.serializer_helpers import ReturnList

import multicore
from multicore import drf
from multicore.drf import SplicedRows
from tests.drf import tasks

pytestmark = pytest.mark.urls("tests.drf.urls")


def test_lists_below_drf_min_items(compare, settings, drf_multicore):
    settings.MULTICORE = {**drf_multicore, "drf-min-items": 92}
    compare("/api/items/", expect="fallback:small")
    compare("/api/paged/", expect="fallback:small")
    settings.MULTICORE = {**drf_multicore, "drf-min-items": 91}
    compare("/api/items/", expect="parallel")


def test_inside_an_atomic_block(compare):
    with transaction.atomic():
        compare("/api/items/", expect="fallback:atomic")
    compare("/api/items/", expect="parallel")


def test_uncommitted_rows_are_served_inside_atomic(drf_db, client):
    from tests.testapp.models import Item

    drf.patch()
    with transaction.atomic():
        Item.objects.create(name="uncommitted", group=9)
        names = [row["name"] for row in client.get("/api/items/").json()]
        transaction.set_rollback(True)
    assert "uncommitted" in names


def test_when_task_returns_none_inside_a_worker(drf_db, client):
    task = multicore.Task()
    task.run(tasks.list_inside_worker, "/api/items/")
    status, content, counted = task.get(timeout=60)[0]
    assert (status, counted) == (200, {"fallback:busy": 1})
    assert content == client.get("/api/items/").content


def test_view_opt_out(compare):
    compare("/api/opted-out/", expect="fallback:disabled")


def test_request_that_cannot_be_shipped(compare, drf_db):
    response = compare("/api/locked/", expect="fallback:unshippable", HTTP_X_LOCKED="ann")
    assert response.json()[0]["seen_by"] == "ann"


def test_error_in_a_worker_is_raised_by_the_sequential_path(drf_db, client):
    drf.patch()
    before = drf.stats["fallback:error"]
    with pytest.raises(ValueError, match="cannot digest ben-13"):
        client.get("/api/exploding/")
    assert drf.stats["fallback:error"] == before + 1
    drf.unpatch()
    with pytest.raises(ValueError, match="cannot digest ben-13"):
        client.get("/api/exploding/")


def test_json_is_spliced_other_renderings_travel_as_objects(drf_db, client):
    drf.patch()
    assert isinstance(client.get("/api/items/").data, SplicedRows)
    assert isinstance(client.get("/api/paged/").data["results"], SplicedRows)
    assert isinstance(client.get("/api/items/", HTTP_ACCEPT="application/json; indent=4").data, ReturnList)


def test_when_no_cpu_is_idle(compare, settings, drf_multicore):
    from multicore._pool.lifecycle import usable_cpus

    # More idle CPUs than the machine has: never true, as this thread is running.
    settings.MULTICORE = {**drf_multicore, "drf-min-idle-cpus": usable_cpus()}
    compare("/api/items/", expect="fallback:busy")
