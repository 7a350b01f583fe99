"""A pool inherited through a fork from C, where no at-fork hook runs (uWSGI forks its workers
that way, Apache its processes): every entry point recognises the pool by its owner pid, drops
it without touching the owner's workers, and the child starts a pool of its own."""

import pytest

from tests.support import run_python

CHILD = """
import ctypes, os, time
import multicore
from multicore._pool import lifecycle


def regions():
    with open(f"/proc/{os.getpid()}/maps") as f:
        return len({line.split()[4] for line in f if "/memfd:multicore-control" in line})


assert multicore.warm_up()
owner = multicore.pool_info()
r, w = os.pipe()
pid = ctypes.CDLL(None).fork()  # libc's fork: Python's at-fork hooks do not run
if pid == 0:
    try:
        held = lifecycle.current()
        assert held is not None and held.pid == owner["pid"] and lifecycle.owned() is None
        del held  # (a reference kept here would keep its memory mapped)
        ENTRY
        assert lifecycle.current() is None or lifecycle.current().pid == os.getpid()
        assert multicore.warm_up(), "the child's own pool did not start"
        mine = multicore.pool_info()
        task = multicore.Task()
        for _ in range(8):
            task.run(os.getpid)
        ran_on = set(task.get())
        result = {
            "own": mine["pid"] == os.getpid() and mine["supervisor_pid"] != owner["supervisor_pid"],
            "ran_on_own": ran_on <= {w["pid"] for w in mine["workers"]},
            "regions": regions(),
        }
        del task  # (it holds the pool)
        multicore.shutdown()
        result["regions_after_shutdown"] = regions()
        os.write(w, repr(result).encode())
    finally:
        os._exit(0)
os.waitpid(pid, 0)
child = eval(os.read(r, 1000))
after = multicore.pool_info()
task = multicore.Task()
task.run(os.getpid)
print(child["own"], child["ran_on_own"], child["regions"], child["regions_after_shutdown"],
      after["running"] and after["supervisor_pid"] == owner["supervisor_pid"]
      and [w["pid"] for w in after["workers"]] == [w["pid"] for w in owner["workers"]],
      task.get()[0] in {w["pid"] for w in owner["workers"]})
multicore.shutdown()
"""

ENTRIES = {
    "pool_info": 'assert not multicore.pool_info()["running"]',
    "initialize": "multicore.initialize()",
    "warm_up": "assert multicore.warm_up()",
    "Task": "t = multicore.Task(); t.run(os.getpid); assert t.get()[0] != owner['workers'][0]['pid']; del t",
    "shutdown": "multicore.shutdown(); assert lifecycle.current() is None",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_pool_inherited_through_a_c_fork_is_dropped_and_replaced(entry):
    proc = run_python(CHILD.replace("ENTRY", ENTRIES[entry]), timeout=60)
    # own pool, tasks ran on it, it mapped one pool's memory (not two), none after its shutdown;
    # the owner's pool is untouched and still serves.
    assert proc.stdout.split() == ["True", "True", "1", "0", "True", "True"], proc.stderr
