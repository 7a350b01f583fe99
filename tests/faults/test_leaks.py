"""Nothing leaks: processes, file descriptors, /dev/shm entries, memory."""

from __future__ import annotations

import pytest

from tests.support import run_python


@pytest.mark.timeout(120)
def test_fifty_initialize_shutdown_cycles_leak_nothing():
    proc = run_python(r'''
import gc, os, time
import multicore
from multicore import Task
from tests.faults._util import children_of, fd_count, shm_entries, wait_for

def big(n):
    return b"z" * n

me = os.getpid()
# One cycle first, so lazily created things (the fn cache, imports, logging) exist before counting.
multicore.initialize(workers=2); multicore.shutdown()
fds, shm = fd_count(), shm_entries()
for cycle in range(50):
    multicore.initialize(workers=2)
    t = Task()
    for i in range(4):
        t.run(big, 200_000)                  # segments both ways, not only inline slots
    assert [len(r) for r in t.get(timeout=20)] == [200_000] * 4
    info = multicore.pool_info()
    supervisor = info["supervisor_pid"]
    multicore.shutdown()
    # shutdown() returns after the supervisor was reaped; its workers went before it.
    assert children_of(me) == [], (cycle, children_of(me))
    assert not os.path.exists(f"/proc/{supervisor}"), cycle
gc.collect()
assert fd_count() == fds, (fds, fd_count(), os.listdir("/proc/self/fd"))
assert shm_entries() == shm, shm_entries() ^ shm
print("OK")
''', timeout=110)
    assert "OK" in proc.stdout


@pytest.mark.timeout(150)
def test_a_million_tiny_calls_keep_memory_flat():
    """RSS after warm-up vs at the end, parent and workers, with a tolerance for allocator noise."""
    proc = run_python(r'''
import os
import multicore
from multicore import Task
from tests.faults._util import rss_bytes

def tiny(i):
    return i + 1

multicore.initialize(workers=2)
me = os.getpid()

def batch(n=10_000):
    t = Task()
    for i in range(n):
        t.run(tiny, i)
    out = t.get(timeout=60)
    assert out[0] == 1 and out[-1] == n and len(out) == n

for _ in range(10):            # warm-up: 100,000 calls
    batch()
workers = [w["pid"] for w in multicore.pool_info()["workers"]]
before = {pid: rss_bytes(pid) for pid in [me, *workers]}
for _ in range(100):           # the million
    batch()
info = multicore.pool_info()
assert [w["pid"] for w in info["workers"]] == workers, "a worker was replaced during the soak"
after = {pid: rss_bytes(pid) for pid in [me, *workers]}
growth = {pid: after[pid] - before[pid] for pid in before}
print("growth", growth, "before", before)
assert all(g < 8 << 20 for g in growth.values()), growth
assert info["slots_in_use"] == 0 and info["completed"] >= 1_100_000, info
print("OK")
''', timeout=140)
    assert "OK" in proc.stdout
