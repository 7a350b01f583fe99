"""Faults on the dask backend: timeouts stop the call, a dying worker gives WorkerLostError and
the call is not run again, an unreachable scheduler gives PoolUnavailableError."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import multicore
from multicore.exceptions import PoolUnavailableError, TimeoutExceededError, WorkerLostError
from tests.dask import helpers
from tests.dask.cluster import free_port
from tests.support import wait_until


def _worker_pids() -> set[int]:
    return {w["pid"] for w in multicore.pool_info()["workers"] if w["pid"]}


def _healed(cluster) -> None:
    """Both workers are back (a nanny restarts its worker) and take calls."""
    cluster.wait_for_workers(2, timeout=60)
    task = multicore.Task()
    for i in range(4):
        task.run(helpers.add, i, 1)
    assert task.get(timeout=60) == [1, 2, 3, 4]


def test_a_timeout_stops_the_call_and_leaves_no_stale_result(dask_backend, tmp_path):
    path = str(tmp_path / "stuck")
    before = _worker_pids()
    task = multicore.Task()
    task.run(helpers.sleep_then_write, 4.0, path)
    task.run(helpers.add, 1, 2)
    assert wait_until(lambda: os.path.exists(path + ".started"), timeout=30)
    stuck_pid = int(Path(path + ".started").read_text())
    with pytest.raises(TimeoutExceededError, match="1 of 2 calls unfinished") as info:
        task.get(timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    # Its worker was restarted through the nanny: the process running the call is gone.
    assert wait_until(lambda: not os.path.exists(f"/proc/{stuck_pid}"), timeout=30)
    _healed(dask_backend)
    after = _worker_pids()
    assert stuck_pid in before and stuck_pid not in after and len(after) == 2
    # The call never finished, and no later Task sees its result.
    time.sleep(4.5)
    assert not os.path.exists(path)
    task = multicore.Task()
    for _ in range(4):
        task.run(helpers.token)
    assert "stale" not in task.get(timeout=60)


def test_a_worker_dying_in_a_call_gives_worker_lost_and_no_rerun(dask_backend, tmp_path):
    path = str(tmp_path / "exits")
    task = multicore.Task()
    task.run(helpers.add, 1)
    task.run(helpers.exit_hard, path)
    with pytest.raises(WorkerLostError, match=r"died while running call 1 of 2 \(exit_hard\)") as info:
        task.get(timeout=60)
    assert "not run again" in str(info.value)
    _healed(dask_backend)
    with open(path) as f:
        assert len(f.read().splitlines()) == 1  # allowed-failures 0: it ran once, on one worker


def test_worker_lost_is_raised_without_waiting_for_the_other_calls(dask_backend, tmp_path):
    task = multicore.Task()
    task.run(helpers.write_pid_and_wait, str(tmp_path / "long"), 20)  # still running at the timeout
    task.run(helpers.exit_hard, str(tmp_path / "exits"))
    with pytest.raises(WorkerLostError, match=r"call 1 of 2 \(exit_hard\)"):
        task.get(timeout=10)  # not TimeoutExceededError: the death is reported while call 0 runs
    _healed(dask_backend)


def test_a_sigkilled_worker_gives_worker_lost(dask_backend, tmp_path):
    path = str(tmp_path / "pid")
    task = multicore.Task()
    task.run(helpers.write_pid_and_wait, path, 60)
    assert wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=30)
    victim = int(Path(path).read_text())
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="write_pid_and_wait"):
        task.get(timeout=60)
    _healed(dask_backend)
    assert victim not in _worker_pids()


def test_an_unreachable_scheduler_gives_pool_unavailable_with_the_address(dask_cluster):
    address = f"tcp://127.0.0.1:{free_port()}"
    multicore.shutdown()
    started = time.monotonic()
    try:
        with pytest.raises(PoolUnavailableError, match=f"Dask scheduler at {address}"):
            multicore.initialize(backend="dask", dask_address=address)
        assert time.monotonic() - started < 60  # bounded (the connect timeout), not a hang
        with pytest.raises(PoolUnavailableError, match=address):
            multicore.Task()
    finally:
        multicore.shutdown()
