"""run_batch(): planning, the ledger, resume, atomic chunks, failures and retries (in process)."""

from __future__ import annotations

import itertools
import os
import pickle

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import multicore
from multicore.batch import (
    BatchFailedError,
    BatchLockedError,
    BatchPlanChangedError,
    BatchReport,
    plan,
    run_batch,
    worker,
)
from multicore.batch.models import BatchChunk, BatchRun
from multicore.exceptions import MulticoreError
from tests.batch import tasks
from tests.batch.conftest import counters
from tests.batch.models import Row, UUIDRow

pytestmark = pytest.mark.django_db(transaction=True)


def chunks(name):
    return list(BatchChunk.objects.filter(run__name=name).order_by("index"))


# -- planning ---------------------------------------------------------------------------------------


def test_plan_covers_sparse_integer_keys_in_ranges_of_chunk_size(rows):
    bounds = plan.plan(rows, 10)
    assert len(bounds) == 10 and bounds[0][0] is None and bounds[-1][1] is None
    assert all(hi == nxt for (_, hi), (nxt, _) in itertools.pairwise(bounds))
    sizes = [worker.build_queryset(_job(rows), lo, hi).count() for lo, hi in bounds]
    assert sizes == [10] * 9 + [8]


def _job(queryset, fn=tasks.bump):
    return pickle.loads(plan.job_blob(queryset, fn, atomic=True, max_memory_per_worker=None))


def test_chunks_are_read_by_key_range_never_offset(rows):
    job = _job(rows.filter(group__lt=10).order_by("-value"))
    with CaptureQueriesContext(connection) as ctx:
        pks = list(worker.build_queryset(job, 20, 60).values_list("pk", flat=True))
    assert pks == sorted(pks) and all(20 <= pk < 60 for pk in pks)
    sql = ctx.captured_queries[0]["sql"].upper()
    assert "OFFSET" not in sql and "ORDER BY" in sql


def test_filtered_and_user_ordered_querysets_are_chunked_by_primary_key(rows):
    odd = Row.objects.filter(group__gte=10).order_by("-value")
    report = run_batch(odd, tasks.bump, chunk_size=7, progress=None)
    assert report.rows == odd.count() and report.total == -(-odd.count() // 7)
    assert set(Row.objects.filter(counter=1).values_list("pk", flat=True)) == set(odd.values_list("pk", flat=True))
    assert not Row.objects.filter(counter__gt=1).exists()


def test_uuid_keys(multicore_db):
    UUIDRow.objects.bulk_create(UUIDRow() for _ in range(53))
    report = run_batch(UUIDRow.objects.all(), tasks.bump, name="uuid", chunk_size=10, progress=None)
    assert (report.total, report.done, report.rows) == (6, 6, 53)
    assert set(UUIDRow.objects.values_list("counter", flat=True)) == {1}
    assert isinstance(chunks("uuid")[1].lo, str)  # stored as JSON text, usable as a bound again


def test_empty_queryset_gets_one_open_chunk(multicore_db):
    report = run_batch(Row.objects.all(), tasks.bump, name="empty", chunk_size=10, progress=None)
    assert (report.total, report.done, report.rows) == (1, 1, 0)
    assert [(c.lo, c.hi) for c in chunks("empty")] == [(None, None)]


def test_rows_inserted_after_planning_land_in_the_open_last_chunk(rows):
    last = Row.objects.order_by("-pk")[0]
    Row.objects.filter(group=13).update(group=0)
    Row.objects.filter(pk=last.pk).update(group=13)  # the last chunk fails the first time
    report = run_batch(rows, tasks.fail_on_group, name="late", chunk_size=10, progress=None)
    assert report.failed == 1 and report.failures[0][0] == 9
    Row.objects.filter(pk=last.pk).update(group=0)
    new = Row.objects.bulk_create(Row(value=1000 + i) for i in range(5))
    again = run_batch(rows, tasks.fail_on_group, name="late", chunk_size=10, progress=None)
    assert (again.total, again.skipped, again.done, again.failed, again.rows) == (10, 9, 10, 0, 8 + 5)
    assert all(Row.objects.get(pk=r.pk).counter == 1 for r in new)
    assert counters() == [1] * 103


def test_deleted_rows_leave_chunks_that_finish_with_zero_rows(rows):
    run_batch(rows, tasks.fail_on_group, name="gone", chunk_size=10, progress=None)  # group 13: chunks fail
    failed = [c for c in chunks("gone") if c.status == "failed"]
    assert failed
    Row.objects.filter(group=13).delete()
    again = run_batch(rows, tasks.fail_on_group, name="gone", chunk_size=10, progress=None)
    assert again.failed == 0 and again.done == 10
    assert all(c.status == "done" for c in chunks("gone"))


# -- the ledger --------------------------------------------------------------------------------------


def test_unnamed_writes_nothing_to_the_ledger(rows):
    report = run_batch(rows, tasks.bump, chunk_size=10, progress=None)
    assert isinstance(report, BatchReport) and report.name is None and report.done == 10
    assert not BatchRun.objects.exists() and not BatchChunk.objects.exists()


def test_ledger_records_each_chunk_and_a_rerun_skips_done_chunks(rows):
    report = run_batch(rows, tasks.bump, name="ledger", chunk_size=10, progress=None)
    assert (report.total, report.done, report.skipped, report.failed, report.rows) == (10, 10, 0, 0, 98)
    run = BatchRun.objects.get(name="ledger")
    assert run.status == "done" and run.owner == "" and run.total_chunks == 10 and run.finished_at
    pids = {w["pid"] for w in multicore.pool_info()["workers"]}
    for c in chunks("ledger"):
        assert c.status == "done" and c.attempts == 1 and c.rows in (8, 10) and c.worker_pid in pids
        assert c.duration_ms is not None and c.finished_at and c.error == ""
    again = run_batch(rows, tasks.bump, name="ledger", chunk_size=10, progress=None)
    assert (again.done, again.skipped, again.rows) == (10, 10, 0)
    assert counters() == [1] * 98


def test_restart_forgets_the_ledger(rows):
    run_batch(rows, tasks.bump, name="restart", chunk_size=10, progress=None)
    again = run_batch(rows, tasks.bump, name="restart", chunk_size=10, progress=None, restart=True)
    assert (again.skipped, again.done, again.rows) == (0, 10, 98)
    assert counters() == [2] * 98


def test_returning_none_counts_no_rows(rows):
    report = run_batch(rows, tasks.returns_none, name="none", chunk_size=25, progress=None)
    assert report.done == 4 and report.rows == 0 and counters() == [1] * 98


@pytest.mark.parametrize("change", ["queryset", "chunk_size", "fn"])
def test_a_changed_plan_is_refused_and_names_restart(rows, change):
    run_batch(rows, tasks.fail_on_group, name="fp", chunk_size=10, progress=None)
    queryset = rows.filter(group__lt=15) if change == "queryset" else rows
    size = 20 if change == "chunk_size" else 10
    fn = tasks.bump if change == "fn" else tasks.fail_on_group
    with pytest.raises(BatchPlanChangedError, match="restart") as info:
        run_batch(queryset, fn, name="fp", chunk_size=size, progress=None)
    assert isinstance(info.value, MulticoreError)
    assert run_batch(queryset, fn, name="fp", chunk_size=size, progress=None, restart=True).total


def test_a_second_runner_is_refused_and_a_dead_ones_claim_taken_over(rows):
    from multicore.batch import ledger

    run_batch(rows, tasks.fail_on_group, name="lock", chunk_size=10, progress=None)
    # A live owner: pid 1 on this host (its real start time).
    BatchRun.objects.filter(name="lock").update(owner=f"{ledger.socket.gethostname()}:1:{ledger._start_time(1)}")
    with pytest.raises(BatchLockedError, match="already running"):
        run_batch(rows, tasks.fail_on_group, name="lock", chunk_size=10, progress=None)
    # A dead owner (a pid with another start time) left a chunk running: taken over, rerun.
    BatchRun.objects.filter(name="lock").update(owner=f"{ledger.socket.gethostname()}:1:0")
    BatchChunk.objects.filter(run__name="lock", index=0).update(status="running")
    Row.objects.filter(group=13).update(group=0)
    report = run_batch(rows, tasks.fail_on_group, name="lock", chunk_size=10, progress=None)
    assert report.failed == 0 and report.done == 10
    assert all(c.status == "done" for c in chunks("lock"))


# -- atomic chunks, failures, retries ----------------------------------------------------------------


def test_atomic_chunk_rolls_back_its_writes_when_fn_raises(rows):
    report = run_batch(rows, tasks.fail_on_group, name="atomic", chunk_size=10, progress=None)
    cursed = set(Row.objects.filter(group=13).values_list("pk", flat=True))
    failed = [c.index for c in chunks("atomic") if c.status == "failed"]
    assert report.failed == len(failed) > 0 and sorted(i for i, _ in report.failures) == failed
    for c in chunks("atomic"):
        in_chunk = worker.build_queryset(_job(rows), c.lo, c.hi)
        expected = 0 if c.status == "failed" else 1
        assert set(in_chunk.values_list("counter", flat=True)) == {expected}
        assert (c.status == "failed") == bool(cursed & set(in_chunk.values_list("pk", flat=True)))
    error = chunks("atomic")[failed[0]].error
    assert error.startswith("ValueError: group 13 is cursed") and "Worker traceback" in error
    assert "fail_on_group" in error  # the remote traceback names the function's frame


def test_non_atomic_chunk_keeps_its_writes_when_fn_raises(rows):
    run_batch(rows, tasks.fail_on_group, name="loose", chunk_size=10, atomic=False, progress=None)
    assert counters() == [1] * 98  # written, then raised: at least once


def test_raise_for_failures(rows):
    report = run_batch(rows, tasks.fail_on_group, name="raise", chunk_size=10, progress=None)
    with pytest.raises(BatchFailedError, match=r"chunks failed: chunk \d+: ValueError: group 13 is cursed") as info:
        report.raise_for_failures()
    assert isinstance(info.value, MulticoreError) and info.value.failures == report.failures
    run_batch(rows, tasks.bump, name="fine", chunk_size=10, progress=None).raise_for_failures()


def test_worker_death_is_retried(rows, fresh_pool, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_TEST_MARKER", str(tmp_path / "died"))
    report = run_batch(rows, tasks.die_first_time, name="death", chunk_size=10, retries=1, progress=None)
    assert report.failed == 0 and report.done == 10 and (tmp_path / "died").exists()
    assert counters() == [1] * 98
    assert max(c.attempts for c in chunks("death")) == 2


def test_worker_death_without_retries_fails_that_chunk_only(rows, fresh_pool):
    report = run_batch(rows, tasks.die_always, name="death0", chunk_size=10, progress=None)
    bad = [c for c in chunks("death0") if c.status == "failed"]
    assert report.failed == len(bad) > 0 and report.done == 10 - len(bad)
    assert "WorkerLostError" in bad[0].error and "exit code 9" in bad[0].error
    assert multicore.Task() is not None  # the pool healed


def test_timeout_kills_the_chunk_and_retries_it(rows, fresh_pool, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_TEST_MARKER", str(tmp_path / "slept"))
    report = run_batch(rows, tasks.sleep_on_group, name="slow", chunk_size=10, retries=1, timeout=3, progress=None)
    assert report.failed == 0 and report.done == 10 and counters() == [1] * 98
    retried = [c for c in chunks("slow") if c.attempts == 2]
    assert len(retried) == 1


def test_timeout_without_retries_is_a_failure(rows, fresh_pool, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_TEST_MARKER", str(tmp_path / "slept"))
    report = run_batch(rows, tasks.sleep_on_group, name="slow0", chunk_size=10, timeout=2, progress=None)
    assert report.failed == 1 and "timeout=2s" in report.failures[0][1]
    failed = next(c for c in chunks("slow0") if c.status == "failed")
    in_chunk = worker.build_queryset(_job(rows), failed.lo, failed.hi)
    assert set(in_chunk.values_list("counter", flat=True)) == {0}  # killed: nothing committed


def test_sqlite_read_then_write_chunks_never_hit_database_is_locked(rows):
    # One row per chunk, each chunk reads, then writes, then marks itself done, on every worker.
    report = run_batch(rows, tasks.bump, name="lockfree", chunk_size=1, progress=None)
    assert report.failed == 0 and report.done == 98 and counters() == [1] * 98


def test_workers_argument_starts_the_pool_with_that_many(rows, fresh_pool):
    report = run_batch(rows, tasks.record_pid, chunk_size=10, workers=1, progress=None)
    assert report.done == 10
    assert len(set(Row.objects.values_list("result", flat=True))) == 1


def test_class_form(rows):
    report = tasks.BumpJob().run(progress=None)
    assert report.name == "tests-bump" and report.done == 10 and counters() == [1] * 98
    assert os.getpid() not in {c.worker_pid for c in chunks("tests-bump")}
