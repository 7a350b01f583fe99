"""Scenarios of tests/faults/test_leaks.py (run as ``python -m tests.faults.scenarios.leaks <scenario>``)."""

import gc
import os

import multicore
from multicore import Task
from tests.faults._util import children_of, fd_count, rss_bytes, shm_entries


def big(n):
    return b"z" * n


def tiny(i):
    return i + 1


def batch(n=10_000):
    t = Task()
    for i in range(n):
        t.run(tiny, i)
    out = t.get(timeout=60)
    assert out[0] == 1 and out[-1] == n and len(out) == n


def fifty_initialize_shutdown_cycles_leak_nothing() -> None:
    me = os.getpid()
    # One cycle first, so lazily created things (the fn cache, imports, logging) exist before counting.
    for _ in range(2):
        multicore.initialize(workers=2)
        multicore.shutdown()
    fds, shm = fd_count(), shm_entries()
    for cycle in range(50):
        multicore.initialize(workers=2)
        t = Task()
        for _ in range(4):
            t.run(big, 200_000)  # segments both ways, not only inline slots
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


def a_million_tiny_calls_keep_memory_flat() -> None:
    multicore.initialize(workers=2)
    me = os.getpid()
    for _ in range(10):  # warm-up: 100,000 calls
        batch()
    workers = [w["pid"] for w in multicore.pool_info()["workers"]]
    before = {pid: rss_bytes(pid) for pid in [me, *workers]}
    for _ in range(100):  # the million
        batch()
    info = multicore.pool_info()
    assert [w["pid"] for w in info["workers"]] == workers, "a worker was replaced during the soak"
    after = {pid: rss_bytes(pid) for pid in [me, *workers]}
    growth = {pid: after[pid] - before[pid] for pid in before}
    print("growth", growth, "before", before)
    assert all(g < 8 << 20 for g in growth.values()), growth
    assert info["slots_in_use"] == 0 and info["completed"] >= 1_100_000, info


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
