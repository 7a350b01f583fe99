import pytest

from multicore.batch import run_batch
from tests.batch import tasks
from tests.batch.conftest import counters

pytestmark = pytest.mark.django_db(transaction=True)


def test_unnamed(rows):
    report = run_batch(rows, tasks.bump, chunk_size=10, progress=None)
    assert report.total == 10 and report.done == 10 and report.rows == 98
    assert counters() == [1] * 98


def test_named(rows):
    report = run_batch(rows, tasks.bump, name="smoke", chunk_size=10, progress=None)
    assert report.done == 10 and report.rows == 98
    again = run_batch(rows, tasks.bump, name="smoke", chunk_size=10, progress=None)
    assert again.skipped == 10 and again.done == 10 and again.rows == 0
    assert counters() == [1] * 98
