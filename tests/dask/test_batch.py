"""run_batch() and manage.py runbatch on the dask backend, against the real cluster: chunks on the
cluster's workers, the same ledger (a job resumes on either backend), atomic chunks, errors and
retries, a worker lost mid-chunk, timeouts, progress, and the two-stage Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import time

import pytest

import multicore
from multicore.backends import dask as dask_backend_module
from multicore.batch import run_batch
from multicore.batch.models import BatchChunk, BatchRun
from multicore.exceptions import ConfigurationError, MulticoreWarning
from tests.batch import tasks
from tests.batch.conftest import counters, done_chunks, finish, runbatch
from tests.batch.models import Row
from tests.dask import batch_jobs
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def chunks(name):
    return list(BatchChunk.objects.filter(run__name=name).order_by("index"))


def dask_pids() -> set[int]:
    return {w["pid"] for w in dask_backend_module.info()["workers"]}


def healed(cluster) -> None:
    """Both workers back (after a test whose workers died or were killed)."""
    cluster.wait_for_workers(2, timeout=60)


@pytest.fixture
def many(multicore_db):
    Row.objects.bulk_create(Row(value=i, group=i % 20) for i in range(300))
    return Row.objects.all()


# -- where the chunks run ----------------------------------------------------------------------------


def test_chunks_spread_over_the_dask_workers_and_the_ledger_records_them(rows, dask_backend):
    report = run_batch(rows, tasks.record_pid, name="spread", chunk_size=10, backend="dask", progress=None)
    assert (report.total, report.done, report.failed, report.rows) == (10, 10, 0, 98)
    workers = dask_pids()
    assert len(workers) == 2 and os.getpid() not in workers
    assert set(Row.objects.values_list("result", flat=True)) == workers  # both workers took chunks
    assert counters() == [1] * 98
    for c in chunks("spread"):
        assert c.status == "done" and c.attempts == 1 and c.worker_pid in workers and c.rows in (8, 10)
    run = BatchRun.objects.get(name="spread")
    assert run.status == "done" and run.owner == ""


def test_the_configured_backend_is_the_default_and_backend_local_overrides_it(rows, dask_backend):
    run_batch(rows, tasks.record_pid, chunk_size=10, progress=None)  # initialize(backend="dask")
    assert set(Row.objects.values_list("result", flat=True)) <= dask_pids()
    run_batch(rows, tasks.record_pid, chunk_size=10, progress=None, backend="local")
    pids = set(Row.objects.values_list("result", flat=True))
    assert pids and not pids & dask_pids() and os.getpid() not in pids
    assert counters() == [2] * 98


def test_without_an_address_the_error_names_the_settings(rows, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    multicore.shutdown()
    with pytest.raises(ConfigurationError, match="dask-address"):
        run_batch(rows, tasks.bump, name="nowhere", chunk_size=10, backend="dask", progress=None)
    assert BatchRun.objects.get(name="nowhere").status == "interrupted"  # released, resumable
    with pytest.raises(ConfigurationError, match="backend must be one of 'local', 'dask'"):
        run_batch(rows, tasks.bump, chunk_size=10, backend="ray", progress=None)


def test_max_memory_per_worker_is_not_applied_on_dask_and_says_so(rows, dask_backend):
    with pytest.warns(MulticoreWarning, match="--memory-limit"):
        report = run_batch(rows, tasks.bump, chunk_size=50, backend="dask", max_memory_per_worker="1GB", progress=None)
    assert report.done == 2 and counters() == [1] * 98


# -- the same ledger, either backend -----------------------------------------------------------------


def in_chunk(c):
    bounds = {**({"pk__gte": c.lo} if c.lo is not None else {}), **({"pk__lt": c.hi} if c.hi is not None else {})}
    return Row.objects.filter(**bounds)


def test_failed_chunks_roll_back_on_dask_and_rerun_alone_on_local(rows, dask_backend):
    report = run_batch(rows, tasks.fail_on_group, name="either", chunk_size=10, retries=1, progress=None)
    failed = {c.index for c in chunks("either") if c.status == "failed"}
    assert report.failed == len(failed) > 0 and sorted(i for i, _ in report.failures) == sorted(failed)
    for c in chunks("either"):
        # atomic: a failed chunk's writes rolled back, each of its two attempts
        assert set(in_chunk(c).values_list("counter", flat=True)) == {0 if c.index in failed else 1}
        assert c.attempts == (2 if c.index in failed else 1)
        assert c.index in failed or c.worker_pid in dask_pids()
    error = chunks("either")[min(failed)].error
    assert error.startswith("ValueError: group 13 is cursed") and "Worker traceback" in error
    assert "fail_on_group" in error  # the dask worker's traceback names the function's frame
    Row.objects.filter(group=13).update(group=0)
    again = run_batch(rows, tasks.fail_on_group, name="either", chunk_size=10, backend="local", progress=None)
    assert (again.skipped, again.done, again.failed) == (10 - len(failed), 10, 0)
    assert counters() == [1] * 98
    assert [c.attempts for c in chunks("either") if c.index in failed] == [3] * len(failed)


# -- faults ------------------------------------------------------------------------------------------


def test_a_worker_lost_mid_chunk_is_retried_once_not_silently_rerun(rows, dask_backend, tmp_path):
    victim = Row.objects.order_by("pk")[45].pk
    marker = tmp_path / "died"
    try:
        report = run_batch(
            rows, batch_jobs.DieOnRow(victim, str(marker)), name="lost", chunk_size=10, retries=1, progress=None
        )
        assert report.failed == 0 and report.done == 10 and counters() == [1] * 98
        dead = int(marker.read_text().split()[0])
        retried = [c for c in chunks("lost") if c.attempts == 2]
        assert len(retried) == 1 and retried[0].worker_pid != dead  # the one that died, once more
        assert all(c.attempts == 1 for c in chunks("lost") if c not in retried)  # the rest ran once
    finally:
        healed(dask_backend)


def test_a_worker_lost_mid_chunk_without_retries_fails_that_chunk_only(rows, dask_backend):
    victim = Row.objects.order_by("pk")[45].pk
    try:
        report = run_batch(rows, batch_jobs.DieOnRow(victim), name="lost0", chunk_size=10, progress=None)
        bad = [c for c in chunks("lost0") if c.status == "failed"]
        assert report.failed == len(bad) == 1 and report.done == 9
        assert "WorkerLostError: Dask worker tcp://" in bad[0].error and "while running chunk" in bad[0].error
        assert bad[0].attempts == 1  # not run again by Dask (allowed-failures: 0)
        assert set(in_chunk(bad[0]).values_list("counter", flat=True)) == {0}  # rolled back with its worker
        assert sum(counters()) == 98 - in_chunk(bad[0]).count()
    finally:
        healed(dask_backend)


def test_a_timeout_stops_the_chunk_through_the_nanny_and_retries_it(rows, dask_backend, tmp_path):
    victim = Row.objects.order_by("pk")[15].pk
    marker = tmp_path / "slept"
    try:
        started = time.monotonic()
        report = run_batch(
            rows, batch_jobs.SleepOnRow(victim, str(marker)), name="slow", chunk_size=10, retries=1, timeout=3,
            progress=None,
        )  # fmt: skip
        assert time.monotonic() - started < 40  # not the minute the chunk would have slept
        assert report.failed == 0 and report.done == 10 and counters() == [1] * 98
        sleeper = int(marker.read_text().split()[0])
        assert wait_until(lambda: sleeper not in dask_pids(), timeout=30)  # killed, replaced by its nanny
        retried = [c for c in chunks("slow") if c.attempts == 2]
        assert len(retried) == 1
    finally:
        healed(dask_backend)


# -- progress ----------------------------------------------------------------------------------------


def test_progress_and_ticks_come_from_the_dask_workers(rows, dask_backend):
    events = []
    first = rows.filter(pk__lte=rows.order_by("pk")[19].pk)
    report = run_batch(first, tasks.slow_ticks, chunk_size=50, progress=events.append)
    assert report.done == 1 and report.rows == 20
    inside = [e.ticks for e in events if e.done == 0 and e.ticks]
    assert inside and max(inside) <= 20 and inside == sorted(inside)  # tick() inside the running chunk
    assert events[-1].final and events[-1].done == 1 and events[-1].rows == 20


def test_log_progress_on_dask(rows, dask_backend, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="multicore.batch")
    run_batch(rows, tasks.bump_rows, name="logged", chunk_size=10, progress="log", progress_interval=0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "multicore.batch" and r.levelno == logging.INFO]
    assert len(lines) >= 2 and lines[-1].startswith("logged: 10/10 chunks (100.0%), 98 rows, ")


# -- manage.py runbatch --backend: interrupted on one backend, resumed on the other ------------------


def _runbatch(cluster, job, *args, env=None):
    return runbatch(f"tests.dask.batch_jobs.{job}", "--progress", "none", *args,
                    env={"DASK_SCHEDULER_ADDRESS": cluster.address, **(env or {})})  # fmt: skip


@pytest.mark.parametrize(
    "first, then, sig",
    [("dask", "local", signal.SIGINT), ("local", "dask", signal.SIGTERM)],
    ids=["dask-then-local-sigint", "local-then-dask-sigterm"],
)
def test_runbatch_interrupted_on_one_backend_resumes_on_the_other(many, dask_cluster, first, then, sig):
    name = batch_jobs.SlowBumpJob.name
    proc = _runbatch(dask_cluster, "SlowBumpJob", "--backend", first)
    try:
        assert wait_until(lambda: done_chunks(name) >= 3, timeout=60)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        finish(proc)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err
    run = BatchRun.objects.get(name=name)
    assert run.status == "interrupted" and run.owner == ""
    assert not BatchChunk.objects.filter(run__name=name, status="running").exists()
    before = {c.index: c.worker_pid for c in chunks(name) if c.status == "done"}
    assert 3 <= len(before) < 30
    proc = _runbatch(dask_cluster, "SlowBumpJob", "--backend", then)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert f"30/30 chunks done ({len(before)} skipped), 0 failed" in out
    assert counters() == [1] * 300  # atomic chunks: every row once, across the two backends
    workers = dask_pids_of(dask_cluster)
    after = {c.index: c.worker_pid for c in chunks(name) if c.index not in before}
    on_dask = set(before.values()) if first == "dask" else set(after.values())
    on_local = set(after.values()) if first == "dask" else set(before.values())
    assert on_dask <= workers and not on_local & workers


def dask_pids_of(cluster) -> set[int]:
    from distributed import Client

    with Client(cluster.address, timeout=10, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def test_runbatch_second_sigint_on_dask_kills_the_running_chunks_workers(multicore_db, dask_cluster):
    Row.objects.bulk_create(Row(value=i) for i in range(60))  # 6 chunks of 3 s
    name = batch_jobs.VerySlowBumpJob.name
    before = dask_pids_of(dask_cluster)
    proc = _runbatch(dask_cluster, "VerySlowBumpJob", "--backend", "dask")
    try:
        try:
            assert wait_until(lambda: done_chunks(name) >= 1, timeout=60)
            time.sleep(0.5)  # the next chunks are running
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        finally:
            finish(proc)
        assert proc.returncode == 130, err
        statuses = set(BatchChunk.objects.filter(run__name=name).values_list("status", flat=True))
        assert "running" not in statuses and "pending" in statuses
        assert 1 <= done_chunks(name) < 6
        # The killed chunks rolled back: the rows counted are those of done chunks.
        assert sum(counters()) == 10 * done_chunks(name)
        healed(dask_cluster)
        assert dask_pids_of(dask_cluster) != before  # the nannies replaced the killed workers
    finally:
        healed(dask_cluster)
