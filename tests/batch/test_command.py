"""``manage.py runbatch`` as a real subprocess: exit codes, --status, --retry-failed, a SIGKILL of
the runner and a rerun (exactly once when atomic), Ctrl-C and SIGTERM, a second runner."""

from __future__ import annotations

import os
import signal
import time

import pytest

from multicore.batch import BatchLockedError, run_batch
from multicore.batch.models import BatchChunk, BatchRun
from tests.batch import tasks
from tests.batch.conftest import counters, done_chunks, finish, runbatch
from tests.batch.models import Row
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"BATCH_TEST_ROW_DELAY": "0.02"}  # 10 rows a chunk: about 0.2 s a chunk


@pytest.fixture
def many(multicore_db):
    Row.objects.bulk_create(Row(value=i, group=i % 20) for i in range(300))
    return Row.objects.all()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_runbatch_runs_a_job_and_a_rerun_skips_it(rows):
    out, err = finish(runbatch("tests.batch.tasks.BumpJob", "--progress", "log"))
    assert "tests-bump: 10/10 chunks done (0 skipped), 0 failed, 98 rows" in out
    assert "tests-bump: 10/10 chunks (100.0%), 98 rows" in err  # the final progress record
    proc = runbatch("tests-bump", "--progress", "none")  # by name
    out, err = finish(proc)
    assert proc.returncode == 0 and "10/10 chunks done (10 skipped)" in out and err == ""
    assert counters() == [1] * 98
    proc = runbatch("--status")
    out, _ = finish(proc)
    assert proc.returncode == 0 and "tests-bump: done: 10/10 chunks done, 0 failed, 0 pending, 98 rows" in out


def test_runbatch_exit_1_lists_failures_and_retry_failed_runs_only_them(rows):
    proc = runbatch("tests.batch.tasks.FailingJob", "--progress", "none")
    out, _ = finish(proc)
    failed = sorted(
        BatchChunk.objects.filter(run__name="tests-failing", status="failed").values_list("index", flat=True)
    )
    assert proc.returncode == 1 and failed
    for index in failed:
        assert f"chunk {index} failed: ValueError: group 13 is cursed" in out
    proc = runbatch("--status", "tests-failing")
    out, _ = finish(proc)
    assert proc.returncode == 0 and f"{len(failed)} failed" in out
    assert f"chunk {failed[0]} failed after 1 attempt(s): ValueError: group 13 is cursed" in out
    proc = runbatch(
        "tests.batch.tasks.FailingJob", "--retry-failed", "--progress", "none", env={"BATCH_TEST_HEAL": "1"}
    )
    out, _ = finish(proc)
    assert proc.returncode == 0 and f"({10 - len(failed)} skipped), 0 failed" in out
    retried = BatchChunk.objects.filter(run__name="tests-failing", attempts=2)
    assert sorted(retried.values_list("index", flat=True)) == failed
    assert counters() == [1] * 98  # the failed chunks' writes had rolled back


@pytest.mark.parametrize("job, atomic", [("BumpJob", True), ("LooseBumpJob", False)])
def test_sigkill_of_the_runner_then_rerun_processes_every_row_once(many, job, atomic):
    name = getattr(tasks, job).name
    proc = runbatch(f"tests.batch.tasks.{job}", "--progress", "none", env=SLOW)
    try:
        assert wait_until(lambda: done_chunks(name) >= 6, timeout=60)
        family = descendants(proc.pid)
        assert len(family) >= 3  # the supervisor and two workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_until(lambda: not any(pid_alive(p) for p in family), timeout=10), "workers outlived their runner"
    finally:
        finish(proc)
    assert BatchChunk.objects.filter(run__name=name, status="running").exists() or True  # left as the runner died
    assert done_chunks(name) < 30
    proc = runbatch(f"tests.batch.tasks.{job}", "--progress", "none")
    out, _ = finish(proc)
    assert proc.returncode == 0 and "30/30 chunks done" in out
    values = counters()
    if atomic:
        assert values == [1] * 300  # exactly once
    else:
        assert min(values) == 1 and max(values) <= 2  # at least once


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_finishes_running_chunks_exit_130_and_a_rerun_resumes(many, sig):
    proc = runbatch("tests.batch.tasks.BumpJob", "--progress", "none", env=SLOW)
    try:
        assert wait_until(lambda: done_chunks("tests-bump") >= 3, timeout=60)
        family = descendants(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        finish(proc)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err
    assert not BatchChunk.objects.filter(run__name="tests-bump", status="running").exists()
    run = BatchRun.objects.get(name="tests-bump")
    assert run.status == "interrupted" and run.owner == ""
    assert 3 <= done_chunks("tests-bump") < 30
    assert wait_until(lambda: not any(pid_alive(p) for p in family), timeout=10)
    # Chunks that were running finished (their rows counted once); none half-done.
    for chunk in BatchChunk.objects.filter(run__name="tests-bump"):
        assert chunk.status in ("done", "pending")
    proc = runbatch("tests.batch.tasks.BumpJob", "--progress", "none")
    out, _ = finish(proc)
    assert proc.returncode == 0 and "30/30 chunks done" in out
    assert counters() == [1] * 300


def test_second_sigint_kills_the_workers_and_puts_their_chunks_back(many):
    # 0.3 s a row: a chunk takes 3 s, so the second Ctrl-C lands while chunks run.
    proc = runbatch("tests.batch.tasks.BumpJob", "--progress", "none", env={"BATCH_TEST_ROW_DELAY": "0.3"})
    try:
        assert wait_until(lambda: done_chunks("tests-bump") >= 1, timeout=60)
        time.sleep(0.5)  # the next chunks are running
        family = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        finish(proc)
    assert proc.returncode == 130, err
    assert wait_until(lambda: not any(pid_alive(p) for p in family), timeout=10)
    statuses = set(BatchChunk.objects.filter(run__name="tests-bump").values_list("status", flat=True))
    assert "running" not in statuses and "pending" in statuses
    done = done_chunks("tests-bump")
    assert 1 <= done < 30 and sum(counters()) == 10 * done  # the killed chunks rolled back
    proc = runbatch("tests.batch.tasks.BumpJob", "--progress", "none")
    _out, _ = finish(proc)
    assert proc.returncode == 0 and counters() == [1] * 300


def test_a_second_runner_of_the_same_job_is_refused(many):
    proc = runbatch("tests.batch.tasks.BumpJob", "--progress", "none", env=SLOW)
    try:
        assert wait_until(lambda: done_chunks("tests-bump") >= 1, timeout=60)
        second = runbatch("tests.batch.tasks.BumpJob", "--progress", "none")
        _out, err = finish(second)
        assert second.returncode == 1 and "is already running (pid" in err and "One runner per name" in err
        with pytest.raises(BatchLockedError, match="already running"):
            run_batch(Row.objects.all(), tasks.BumpJob().process, name="tests-bump", chunk_size=10, retries=1)
        _out, err = proc.communicate(timeout=120)
    finally:
        finish(proc)
    assert proc.returncode == 0 and counters() == [1] * 300
