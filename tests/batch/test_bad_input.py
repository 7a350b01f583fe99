"""Bad input gets a clear MulticoreError before anything runs; atomic() follows the setting."""

from __future__ import annotations

import warnings

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

from multicore.batch import run_batch
from multicore.batch.models import BatchRun
from multicore.exceptions import ConfigurationError, MulticoreError, MulticoreWarning, SerializationError
from tests.batch import models, tasks
from tests.batch.conftest import counters, runbatch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda q: run_batch(q[:10], tasks.bump), "unsliced"),
        (lambda q: run_batch(q.values("pk"), tasks.bump), "values"),
        (lambda q: run_batch([1, 2], tasks.bump), "QuerySet"),
        (lambda q: run_batch(q, tasks.bump, chunk_size=0), "chunk_size must be a positive integer"),
        (lambda q: run_batch(q, tasks.bump, chunk_size=2.5), "chunk_size"),
        (lambda q: run_batch(q, tasks.bump, retries=-1), "retries"),
        (lambda q: run_batch(q, tasks.bump, timeout=0), "timeout"),
        (lambda q: run_batch(q, tasks.bump, workers=0), "workers"),
        (lambda q: run_batch(q, "bump"), "fn must be a callable"),
        (lambda q: run_batch(q, tasks.bump, max_memory_per_worker="lots"), "max_memory_per_worker"),
        (lambda q: run_batch(q, tasks.bump, progress="fancy"), "progress must be"),
        (lambda q: run_batch(q, tasks.bump, name=""), "name must be"),
        (lambda q: run_batch(q, tasks.bump, retry_failed=True), "retry_failed needs a named job"),
        (lambda q: run_batch(q, tasks.bump, name="never-ran", retry_failed=True), "no ledger"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(rows, call, match):
    with pytest.raises(ConfigurationError, match=match) as info:
        call(rows)
    assert isinstance(info.value, MulticoreError)
    assert counters() == [0] * 98 and not BatchRun.objects.exists()


def test_a_function_that_cannot_be_shipped_is_refused(rows):
    with pytest.raises(SerializationError, match="module level") as info:
        run_batch(rows, lambda q: 0)
    assert isinstance(info.value, MulticoreError)

    def local(queryset):
        return 0

    with pytest.raises(SerializationError, match="local"):
        run_batch(rows, local)


@pytest.mark.skipif(not hasattr(models, "CompositeRow"), reason="CompositePrimaryKey needs Django 5.2")
def test_composite_primary_key_is_refused(multicore_db):
    with pytest.raises(ConfigurationError, match="composite primary key"):
        run_batch(models.CompositeRow.objects.all(), tasks.bump)


def test_inside_atomic_sequential_runs_in_this_process_with_a_warning(rows):
    with transaction.atomic():
        rows.filter(group=1).update(value=-1)  # uncommitted: only this process sees it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = run_batch(rows.filter(value=-1), tasks.bump, name="in-atomic", chunk_size=2, progress=None)
    assert any(issubclass(w.category, MulticoreWarning) and "sequentially" in str(w.message) for w in caught)
    assert report.done == report.total and report.rows == rows.filter(group=1).count() > 0
    assert set(rows.filter(group=1).values_list("counter", flat=True)) == {1}


def test_inside_atomic_raise_mode_refuses(rows):
    with (
        override_settings(MULTICORE={"workers": 2, "in-atomic-block": "raise"}),
        transaction.atomic(),
        pytest.raises(TransactionManagementError, match="run_batch"),
    ):
        run_batch(rows, tasks.bump, progress=None)
    assert counters() == [0] * 98


def test_runbatch_unknown_job_and_retry_failed_without_ledger(multicore_db):
    proc = runbatch("tests.batch.tasks.NoSuchJob")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "unknown batch job 'tests.batch.tasks.NoSuchJob'" in err
    proc = runbatch("no-such-name")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "unknown batch job 'no-such-name'" in err
    proc = runbatch("tests.batch.tasks.bump")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "not a multicore.batch.BatchJob subclass" in err
    proc = runbatch("tests.batch.tasks.BumpJob", "--retry-failed")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "has no ledger" in err
