"""Scenarios of tests/faults/test_recycling.py (run as ``python -m tests.faults.scenarios.recycling <scenario>``)."""

import os

import multicore
from multicore import Task
from tests.faults._util import rss_bytes, wait_for


def ident(i):
    return (i, os.getpid())


def big_ident(i):
    # A result too big for the slot travels in the worker's own segment, which must outlive
    # the retiring worker until the parent has read it.
    return (i, os.getpid(), b"r" * 100_000)


_hoard = []


def grow(i, mb):
    _hoard.append(b"m" * (mb << 20))  # touched pages: resident memory really grows
    return (i, os.getpid())


def recycling_above_a_memory_size() -> None:
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
    assert len(runs) >= 5, runs  # recycled several times...
    assert all(2 <= n <= 4 for n in runs[:-1]), runs  # ...each time after 50 MB had piled up
    assert multicore.pool_info()["workers"][0]["recycles"] >= len(runs) - 1


def recycling_after_n_tasks_in_a_long_queue(fn: str) -> None:
    multicore.initialize(workers=1, max_tasks_per_worker=2)
    t = Task()
    for i in range(100):
        t.run(globals()[fn], i)
    results = t.get(timeout=60)
    assert [r[0] for r in results] == list(range(100)), results
    pids = [r[1] for r in results]
    assert len(set(pids)) == 50, len(set(pids))  # exactly two calls per worker
    assert all(pids[i] == pids[i + 1] for i in range(0, 100, 2))
    info = multicore.pool_info()
    assert info["workers"][0]["recycles"] >= 49 and info["workers"][0]["respawns"] == 0, info


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
