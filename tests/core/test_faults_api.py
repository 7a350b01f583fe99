"""The fault lines of the Task API: timeouts and dead workers (heavier cases: tests/faults)."""

import os
import signal
import time

import pytest

from multicore import Task
from multicore.exceptions import TimeoutExceededError, WorkerLostError
from tests.core import helpers
from tests.support import pid_alive, wait_until, worker_pids


def test_timeout_stops_the_call_replaces_its_worker_and_never_leaks_a_late_result(pool):
    before = set(worker_pids())
    task = Task()
    task.run(helpers.sleep_then, 0.4, "late")
    started = time.monotonic()
    with pytest.raises(TimeoutExceededError):
        task.get(timeout=0.1)
    assert time.monotonic() - started < 0.5
    assert wait_until(lambda: len(set(worker_pids()) - before) == 1, timeout=2), "the stuck worker is replaced"
    # The original delivered the timed-out result to the next Task; we never do.
    for i in range(5):
        task = Task()
        task.run(helpers.sleep_then, 0.1, i)
        assert task.get() == [i]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_worker_death_mid_call_raises_promptly_and_the_pool_heals(pool, sig):
    task = Task()
    task.run(helpers.sleep_then, 3, "slow")
    task.run(helpers.kill_self, sig)
    started = time.monotonic()
    with pytest.raises(WorkerLostError) as info:
        task.get(timeout=10)
    assert time.monotonic() - started < 1.0, "well under a second, never the timeout"
    err = info.value
    assert err.signal == sig and err.pid and not pid_alive(err.pid)
    assert signal.Signals(sig).name in str(err) and str(err.pid) in str(err)
    assert wait_until(lambda: len(worker_pids()) == 2 and err.pid not in worker_pids(), timeout=2)
    task = Task()
    task.run(helpers.identity, "healed")
    assert task.get() == ["healed"]


def test_exit_inside_a_call_is_a_lost_worker(pool):
    task = Task()
    task.run(os._exit, 3)
    with pytest.raises(WorkerLostError, match="exit code 3") as info:
        task.get(timeout=5)
    assert info.value.exitcode == 3


def test_a_death_before_get_starts_is_still_noticed_at_once(pool):
    task = Task()
    task.run(helpers.sleep_then, 3, "slow")
    task.run(helpers.kill_self)
    assert wait_until(lambda: any(w["respawns"] for w in pool()["workers"]), timeout=2), "the death is recorded"
    started = time.monotonic()
    with pytest.raises(WorkerLostError):
        task.get(timeout=10)
    assert time.monotonic() - started < 1.0, "not after the slow call ahead of it"
