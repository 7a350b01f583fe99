"""initialize()/shutdown(), lazy start, one pool per process, the load guard, pool_info()."""

import os

import pytest

import multicore
from multicore import Task, _core
from multicore._pool import task as _task
from multicore.exceptions import ConfigurationError, MulticoreTypeError
from tests.core import helpers
from tests.support import pid_alive, run_python, wait_until, worker_pids


@pytest.fixture(autouse=True)
def no_pool_left():
    multicore.shutdown()
    yield
    multicore.shutdown()


def test_initialize_is_idempotent_and_defaults_to_usable_cpus():
    multicore.initialize()
    assert wait_until(lambda: len(worker_pids()) == _core.usable_cpus())
    first = multicore.pool_info()["supervisor_pid"]
    multicore.initialize()
    assert multicore.pool_info()["supervisor_pid"] == first


def test_worker_count_respects_cpu_affinity():
    proc = run_python(
        """
        import os, multicore
        os.sched_setaffinity(0, {0})
        multicore.initialize()
        print(len(multicore.pool_info()["workers"]))
        multicore.shutdown()
        """,
        timeout=30,
    )
    assert proc.stdout.strip() == "1"


def test_shutdown_stops_every_process_and_is_idempotent():
    multicore.initialize(workers=2)
    assert wait_until(lambda: len(worker_pids()) == 2)
    info = multicore.pool_info()
    pids = [*worker_pids(), info["supervisor_pid"]]
    multicore.shutdown()
    multicore.shutdown()
    assert not any(pid_alive(p) for p in pids), "shutdown returns after every process is gone"
    assert multicore.pool_info()["running"] is False


def test_initialize_works_again_after_shutdown():
    for _ in range(3):
        multicore.initialize(workers=1)
        task = Task()
        task.run(helpers.identity, "again")
        assert task.get() == ["again"]
        multicore.shutdown()


def test_task_starts_a_pool_lazily():
    assert multicore.pool_info()["running"] is False
    task = Task()
    task.run(helpers.pid_of)
    (pid,) = task.get()
    assert pid in worker_pids()


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(MulticoreTypeError, match=r"unknown multicore option.*valid options are"):
        multicore.initialize(worker=2)


def test_bad_option_value_is_explained():
    with pytest.raises(ConfigurationError, match="workers must be an integer from 1 to"):
        multicore.initialize(workers=0)


def test_forked_child_gets_its_own_pool():
    proc = run_python(
        """
        import os, multicore
        from tests.core import helpers
        multicore.initialize(workers=1)
        t = multicore.Task(); t.run(helpers.pid_of); parent_worker = t.get()[0]
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            t = multicore.Task(); t.run(helpers.pid_of); mine = t.get()[0]
            info = multicore.pool_info()
            os.write(w, f"{mine} {info['pid']} {info['supervisor_pid']}".encode())
            multicore.shutdown()
            os._exit(0)
        os.waitpid(child, 0)
        mine, owner, supervisor = map(int, os.read(r, 100).split())
        # The parent's pool still works after the child used and shut down its own.
        t = multicore.Task(); t.run(helpers.pid_of)
        print(parent_worker, mine, owner == child, open(f"/proc/{parent_worker}/stat").read().split()[3] != str(child), t.get()[0] == parent_worker)
        multicore.shutdown()
        """,
        timeout=30,
    )
    parent_worker, child_worker, owned, not_child_of_child, parent_ok = proc.stdout.split()
    assert parent_worker != child_worker
    assert owned == "True" and not_child_of_child == "True" and parent_ok == "True"


def test_load_guard_follows_the_real_load_average():
    load = _core.load_average()
    assert load is not None
    cpus = _core.usable_cpus()
    busy = Task(max_load_average=load / cpus / 2 - 1e-9) if load > 0 else None
    assert busy is None
    assert Task(max_load_average=1e6) is not None


def test_load_guard_is_per_core(monkeypatch):
    # The guard compares the 1-minute load with the per-core figure times the CPU count.
    monkeypatch.setattr(_task, "_load_average", lambda: 1.5 * _core.usable_cpus())
    assert Task(max_load_average=1.0) is None
    assert Task(max_load_average=2.0) is not None
    assert Task() is not None, "None means never refuse"


def test_load_guard_reads_the_cpu_count_at_most_once_a_second(monkeypatch):
    # Reading it opens the affinity and cgroup files: per Task() it cost six round trips.
    from multicore._pool import lifecycle

    multicore.initialize(workers=2)  # sizing a pool reads the count too, afresh
    reads = []
    monkeypatch.setattr(lifecycle, "_cpus_read", (float("-inf"), 1))
    monkeypatch.setattr(lifecycle._core, "usable_cpus", lambda: reads.append(1) or 2)
    monkeypatch.setattr(_task, "_load_average", lambda: 1.0)
    assert all(Task(max_load_average=1.0) is not None for _ in range(200))
    assert len(reads) == 1
    monkeypatch.setattr(lifecycle, "_cpus_read", (lifecycle._cpus_read[0] - 1.5, 2))  # a second later
    monkeypatch.setattr(_task, "_load_average", lambda: 3.0)
    assert Task(max_load_average=1.0) is None  # 3.0 > 1.0 per CPU x 2 CPUs
    assert len(reads) == 2


def test_pool_info_describes_workers():
    multicore.initialize(workers=2)
    task = Task()
    for i in range(10):
        task.run(helpers.identity, i)
    task.get()
    info = multicore.pool_info()
    assert info["running"] and info["state"] == "running" and info["pid"] == os.getpid()
    assert len(info["workers"]) == 2
    assert sum(w["tasks_done"] for w in info["workers"]) >= 10
    assert wait_until(lambda: all(w["state"] == "idle" for w in multicore.pool_info()["workers"]))
    assert info["slots_in_use"] == 0
