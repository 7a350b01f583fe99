"""The parent dies by SIGKILL (tests/faults/test_parent_death.py).

``orchestrate`` starts a *victim* interpreter (``warm``, ``busy`` or ``early``, run as a scenario of
this module) that reports READY, kills it, and watches the aftermath through /proc. Every process
of the victim carries a marker in its environment, so even one we never learned the pid of is found.
"""

import json
import os
import select
import subprocess
import sys
import time

import multicore
from multicore import Task
from tests.faults._util import MARK, kill_marked, marked_pids, new_mark, ppid_of, shm_entries, wait_for


def orchestrate(victim: str, rounds: str, delay: str) -> None:
    results = []
    shm_before = shm_entries()
    for round_ in range(int(rounds)):
        mark = new_mark()
        env = {**os.environ, MARK: mark}
        proc = subprocess.Popen(
            [sys.executable, "-m", __spec__.name, victim], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "victim never reported READY"
            line = proc.stdout.readline()
            assert line.startswith("READY"), line
            time.sleep(float(delay) * (round_ % 4) / 3)  # kill at different points of the start-up
            before = marked_pids(mark)
            proc.kill()
            proc.wait(5)
            gone_after = wait_for(lambda mark=mark: not marked_pids(mark), timeout=5)
            survivors = [(p, ppid_of(p)) for p in marked_pids(mark)]
            results.append({"before": before, "gone_after": gone_after, "survivors": survivors})
        finally:
            proc.kill()
            proc.wait(5)
            proc.stdout.close()
            kill_marked(mark)
    # Give the kernel a moment to drop the last references, then compare.
    new_shm = sorted(shm_entries() - shm_before)
    print("RESULT " + json.dumps({"rounds": results, "new_shm": new_shm}), flush=True)


def nap(x):
    time.sleep(x)
    return x


def warm() -> None:
    """An idle pool whose workers all ran calls."""
    multicore.initialize(workers=2)
    t = Task()
    for _ in range(20):
        t.run(os.getpid)
    assert len(t.get()) == 20
    deadline = time.monotonic() + 10
    while sum(w["state"] == "idle" for w in multicore.pool_info()["workers"]) < 2:
        assert time.monotonic() < deadline, multicore.pool_info()
        time.sleep(0.01)
    print("READY", flush=True)
    time.sleep(60)


def busy() -> None:
    """Every worker in the middle of a call."""
    multicore.initialize(workers=2)
    t = Task()
    for _ in range(4):
        t.run(nap, 30)
    deadline = time.monotonic() + 10
    while sum(w["state"] == "busy" for w in multicore.pool_info()["workers"]) < 2:
        assert time.monotonic() < deadline, multicore.pool_info()
        time.sleep(0.01)
    print("READY", flush=True)
    t.get()


def early() -> None:
    """READY comes *before* the pool starts, so the kill lands at different points of the start-up
    (before the supervisor exists, while it forks workers, while workers import)."""
    print("READY", flush=True)
    multicore.initialize(workers=2)
    t = Task()
    t.run(os.getpid)
    t.get()
    time.sleep(60)


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
