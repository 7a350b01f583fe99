"""Workers replaced after N calls or above a memory size, in the middle of a long queue.

CPython's ``Pool(maxtasksperchild=...)`` can deadlock in this shape (cpython#115634): one worker,
a limit of 2, 100 queued items. Here retiring happens between calls while the rest stay queued.
"""

from __future__ import annotations

import pytest

from tests.support import run_python

PRELUDE = r'''
import os, sys, time
import multicore
from multicore import Task
from tests.faults._util import wait_for

def ident(i):
    return (i, os.getpid())

def big_ident(i):
    # A result too big for the slot travels in the worker's own segment, which must outlive
    # the retiring worker until the parent has read it.
    return (i, os.getpid(), b"r" * 100_000)

_hoard = []

def grow(i, mb):
    _hoard.append(b"m" * (mb << 20))   # touched pages: resident memory really grows
    return (i, os.getpid())
'''


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fn", ["ident", "big_ident"])
def test_recycling_after_n_tasks_in_a_long_queue(fn):
    proc = run_python(PRELUDE + rf'''
multicore.initialize(workers=1, max_tasks_per_worker=2)
t = Task()
for i in range(100):
    t.run({fn}, i)
results = t.get(timeout=60)
assert [r[0] for r in results] == list(range(100)), results
pids = [r[1] for r in results]
assert len(set(pids)) == 50, len(set(pids))           # exactly two calls per worker
assert all(pids[i] == pids[i + 1] for i in range(0, 100, 2))
info = multicore.pool_info()
assert info["workers"][0]["recycles"] >= 49 and info["workers"][0]["respawns"] == 0, info
print("OK")
''', timeout=80)
    assert "OK" in proc.stdout


@pytest.mark.timeout(90)
def test_recycling_above_a_memory_size():
    proc = run_python(PRELUDE + r'''
from tests.faults._util import rss_bytes
multicore.initialize(workers=1)
assert wait_for(lambda: multicore.pool_info()["workers"][0]["state"] == "idle", 10) is not None
base = rss_bytes(multicore.pool_info()["workers"][0]["pid"])
multicore.shutdown()
# Each call keeps 20 MB; above base + 50 MB the worker retires after its call.
multicore.initialize(workers=1, max_memory_per_worker=base + (50 << 20))
t = Task()
for i in range(20):
    t.run(grow, i, 20)
results = t.get(timeout=60)
assert [r[0] for r in results] == list(range(20)), results
pids = [r[1] for r in results]
runs = [pids.count(p) for p in dict.fromkeys(pids)]
assert len(runs) >= 5, runs                       # recycled several times...
assert all(2 <= n <= 4 for n in runs[:-1]), runs  # ...each time after 50 MB had piled up
assert multicore.pool_info()["workers"][0]["recycles"] >= len(runs) - 1
print("OK")
''', timeout=80)
    assert "OK" in proc.stdout
