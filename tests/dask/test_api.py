"""The Task API on the dask backend: the local pool's semantics on a real cluster."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

import multicore
from multicore import backends
from multicore._pool.task import Task as LocalTask
from multicore.backends.dask import DaskTask
from multicore.exceptions import (
    RemoteTraceback,
    SerializationError,
    TaskCompleteError,
)
from multicore.utils import ranges
from tests.dask import helpers


def _collect(task, timeout=60):
    return task.get(timeout=timeout)


def test_results_in_order_with_args_and_kwargs(dask_backend):
    task = multicore.Task()
    assert isinstance(task, DaskTask)
    for i in range(40):
        task.run(helpers.add, i, b=1000, c=i)
    assert len(task) == 40
    assert _collect(task) == [1000 + 2 * i for i in range(40)]


def test_calls_run_on_the_cluster_workers(dask_backend):
    task = multicore.Task()
    for _ in range(8):
        task.run(helpers.pid)
    pids = set(_collect(task))
    cluster_pids = {w["pid"] for w in multicore.pool_info()["workers"]}
    assert pids <= cluster_pids and os.getpid() not in pids


def test_two_identical_calls_both_run(dask_backend, tmp_path):
    path = str(tmp_path / "calls")
    task = multicore.Task()
    task.run(helpers.append_line, path, "same")
    task.run(helpers.append_line, path, "same")
    task.run(helpers.token)
    task.run(helpers.token)
    same1, same2, token1, token2 = _collect(task)
    assert (same1, same2) == ("same", "same")
    with open(path) as f:
        assert f.read().splitlines() == ["same", "same"]
    assert token1 != token2


def test_a_call_raises_its_own_exception_with_the_remote_traceback(dask_backend):
    task = multicore.Task()
    task.run(helpers.add, 1)
    task.run(helpers.fail, "it broke")
    with pytest.raises(helpers.Boom, match="it broke") as info:
        _collect(task)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "helpers.py" in cause.tb and "in fail" in cause.tb


def test_what_cannot_be_shipped_raises_serialization_error_at_run(dask_backend):
    task = multicore.Task()
    with pytest.raises(SerializationError, match="argument 0"):
        task.run(helpers.add, threading.Lock())
    assert len(task) == 0
    task.run(helpers.unpicklable_result)
    with pytest.raises(SerializationError, match="unpicklable_result"):
        _collect(task)


def test_lambdas_closures_and_result_formats(dask_backend):
    offset = 5
    task = multicore.Task()
    task.run(lambda x: x * 2, 21)
    task.run(lambda: offset + 1)
    task.run(helpers.add, 1, 2, serialization_format="json")
    task.run(str, 7, serialization_format="string")
    assert _collect(task) == [42, 6, 3, "7"]


def test_task_is_complete_after_get(dask_backend):
    task = multicore.Task()
    task.run(helpers.add, 1)
    assert _collect(task) == [1]
    with pytest.raises(TaskCompleteError):
        task.run(helpers.add, 2)
    with pytest.raises(TaskCompleteError):
        task.get()


def test_an_empty_task(dask_backend):
    assert multicore.Task().get() == []


def test_backend_per_task(dask_backend):
    local = multicore.Task(backend="local")
    assert isinstance(local, LocalTask)
    local.run(helpers.pid)
    local_pid = _collect(local)[0]
    assert local_pid in [w["pid"] for w in multicore._pool.lifecycle._local_info()["workers"]]
    remote = multicore.Task(backend="dask")
    remote.run(helpers.pid)
    assert _collect(remote)[0] in {w["pid"] for w in multicore.pool_info()["workers"]}
    with pytest.raises(ValueError, match="'local', 'dask'"):
        multicore.Task(backend="ray")


def test_no_nested_tasks_on_a_dask_worker(dask_backend):
    task = multicore.Task()
    task.run(helpers.nested_task)
    assert _collect(task) == [True]


def test_pool_info_names_the_backend_the_scheduler_and_its_workers(dask_backend):
    info = multicore.pool_info()
    assert info["backend"] == "dask" and info["running"] is True
    assert info["scheduler"] == dask_backend.address
    workers = info["workers"]
    assert len(workers) == 2
    assert {w["name"] for w in workers} == {"w0", "w1"}
    assert all(w["nthreads"] == 1 and w["pid"] and w["nanny"] for w in workers)


def test_ranges_split_for_the_cluster(dask_backend):
    assert multicore._pool.lifecycle.default_workers() == 2
    assert list(ranges(range(100))) == [(0, 50), (50, 100)]


def test_shutdown_closes_the_client_and_initialize_works_again(dask_backend):
    from multicore.backends import dask as backend

    client = backend._conn.client
    multicore.shutdown()
    assert client.status == "closed"
    assert backend._conn is None and backends.resolve() == "local"
    assert multicore.pool_info()["backend"] == "local"
    multicore.initialize(backend="dask", dask_address=dask_backend.address)
    task = multicore.Task()
    task.run(helpers.add, 2, 3)
    assert _collect(task) == [5]
    assert backend._conn.client is not client


def test_a_forked_child_makes_its_own_client(dask_backend):
    from multicore.backends import dask as backend

    task = multicore.Task()  # the parent's client exists before the fork
    task.run(helpers.add, 1)
    assert _collect(task) == [1]
    parent_client = backend._conn.client
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new client of its own, on the same cluster
        code = 1
        try:
            os.close(read)
            assert backend._conn is None
            child = multicore.Task()
            child.run(helpers.add, 40, 2)
            ok = child.get(timeout=60) == [42] and backend._conn.client is not parent_client
            os.write(write, pickle.dumps(ok))
            multicore.shutdown()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and pickle.loads(data) is True
    assert backend._conn.client is parent_client and parent_client.status == "running"
    task = multicore.Task()
    task.run(helpers.add, 2)
    assert _collect(task) == [2]
