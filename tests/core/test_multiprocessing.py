"""The user's own `multiprocessing` beside a running multicore pool, with each start method.

Python 3.14 made ``forkserver`` the default start method on Linux; code that mixes both must keep
working with ``fork``, ``spawn`` and ``forkserver`` alike: the user's processes run, a process of
theirs can start its own multicore pool (never using the parent's), and the parent's pool is
untouched. The child interpreter runs with every warning as an error, so a fork-with-threads
``DeprecationWarning`` caused by multicore's pool (3.12+) fails the test.
"""

from __future__ import annotations

import os

import pytest

from tests.support import run_python


def _pid(_=None):
    return os.getpid()


def _pool_in_child(n):
    """In the user's process: a Task on a pool of its own, then shut down; what it saw."""
    import multicore
    from multicore import Task

    task = Task()
    for i in range(n):
        task.run(_pid, i)
    worker_pids = set(task.get(timeout=20))
    supervisor = multicore.pool_info()["supervisor_pid"]
    multicore.shutdown()
    return os.getpid(), supervisor, worker_pids


def _queue_pid(queue):
    queue.put(_pool_in_child(2))


SCENARIO = r"""
import math, multiprocessing, os, sys, time
import multicore
from multicore import Task
from tests.core.test_multiprocessing import _pid, _pool_in_child, _queue_pid

assert sys.warnoptions == ["error"], sys.warnoptions
method = {method!r}
multicore.initialize(workers=2)
deadline = time.monotonic() + 20
while not all(w["pid"] for w in multicore.pool_info()["workers"]) and time.monotonic() < deadline:
    time.sleep(0.01)
info = multicore.pool_info()
ours = {{w["pid"] for w in info["workers"]}} | {{info["supervisor_pid"]}}

ctx = multiprocessing.get_context(method) if method else multiprocessing
with ctx.Pool(2) as pool:
    assert pool.map(math.factorial, range(8)) == [math.factorial(i) for i in range(8)]
    for child, supervisor, workers in pool.map(_pool_in_child, [2, 2]):
        assert child != os.getpid() and child not in ours
        assert supervisor not in ours and not (workers & ours), (supervisor, workers, ours)

queue = ctx.Queue()
proc = ctx.Process(target=_queue_pid, args=(queue,))
proc.start()
child, supervisor, workers = queue.get(timeout=30)
proc.join(30)
assert proc.exitcode == 0 and child == proc.pid and supervisor not in ours

# The parent's pool was never disturbed: same processes, still serving.
task = Task()
for i in range(4):
    task.run(_pid, i)
assert set(task.get(timeout=20)) <= ours
assert multicore.pool_info()["supervisor_pid"] == info["supervisor_pid"]
multicore.shutdown()
print("OK", multiprocessing.get_start_method())
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver", None])
def test_user_multiprocessing_beside_a_pool(method):
    # None: the platform default (forkserver on 3.14+, fork before).
    proc = run_python(SCENARIO.format(method=method), timeout=90, env={"PYTHONWARNINGS": "error"})
    assert proc.stdout.split()[0] == "OK", proc.stdout
    assert proc.stderr == "", proc.stderr
