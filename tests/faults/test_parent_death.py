"""The parent dies by SIGKILL (OOM killer, gunicorn's timeout, an operator): nothing survives it.

Each scenario runs in a child interpreter (``run_python``) that starts a *victim* interpreter with a
pool, kills it, and watches the aftermath through /proc. Every process of the victim carries a
marker in its environment, so even a process we never learned the pid of is found.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_python

ORCHESTRATOR = r'''
import json, os, select, signal, subprocess, sys, time
from tests.faults._util import MARK, kill_marked, marked_pids, new_mark, ppid_of, shm_entries, wait_for

VICTIM = {victim!r}
results = []
shm_before = shm_entries()
for round_ in range({rounds}):
    mark = new_mark()
    env = {{**os.environ, MARK: mark}}
    proc = subprocess.Popen([sys.executable, "-c", VICTIM], env=env, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "victim never reported READY"
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        time.sleep({delay} * (round_ % 4) / 3)   # kill at different points of the start-up
        before = marked_pids(mark)
        proc.kill()
        proc.wait(5)
        gone_after = wait_for(lambda: not marked_pids(mark), timeout=5)
        survivors = [(p, ppid_of(p)) for p in marked_pids(mark)]
        results.append({{"before": before, "gone_after": gone_after, "survivors": survivors}})
    finally:
        proc.kill()
        proc.wait(5)
        kill_marked(mark)
# Give the kernel a moment to drop the last references, then compare.
new_shm = sorted(shm_entries() - shm_before)
print("RESULT " + json.dumps({{"rounds": results, "new_shm": new_shm}}))
'''

WARM = r'''
import os, time, multicore
from multicore import Task
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
'''

BUSY = r'''
import os, time, multicore
from multicore import Task

def nap(x):
    time.sleep(x)
    return x

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
'''

# READY comes *before* the pool starts, so the kill lands at different points of the start-up
# (before the supervisor exists, while it forks workers, while workers import).
EARLY = r'''
import os, time, multicore
from multicore import Task
print("READY", flush=True)
multicore.initialize(workers=2)
t = Task()
t.run(os.getpid)
t.get()
time.sleep(60)
'''


def run_scenario(victim: str, rounds: int, delay: float, timeout: float) -> dict:
    code = ORCHESTRATOR.format(victim=victim, rounds=rounds, delay=delay)
    proc = run_python(code, timeout=timeout)
    line = next(text for text in proc.stdout.splitlines() if text.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def assert_clean(result: dict) -> None:
    for i, r in enumerate(result["rounds"]):
        assert r["gone_after"] is not None, f"round {i}: survivors after 5 s: {r['survivors']}"
        assert r["gone_after"] < 2.0, f"round {i}: processes outlived the parent for {r['gone_after']:.2f} s"
        assert r["survivors"] == [], f"round {i}: orphans (pid, ppid): {r['survivors']}"
    assert result["new_shm"] == [], f"left in /dev/shm: {result['new_shm']}"


@pytest.mark.timeout(90)
def test_idle_pool_dies_with_its_parent():
    result = run_scenario(WARM, rounds=2, delay=0.0, timeout=60)
    assert_clean(result)
    # The victim really had a supervisor and two workers, so "all gone" means something.
    assert all(len(r["before"]) == 4 for r in result["rounds"]), result


@pytest.mark.timeout(90)
def test_busy_workers_die_with_their_parent():
    """Workers in the middle of 30 s calls: nobody can read those results any more."""
    result = run_scenario(BUSY, rounds=2, delay=0.0, timeout=60)
    assert_clean(result)
    assert all(len(r["before"]) == 4 for r in result["rounds"]), result


@pytest.mark.timeout(150)
def test_parent_killed_right_after_start():
    result = run_scenario(EARLY, rounds=8, delay=0.03, timeout=120)
    assert_clean(result)


@pytest.mark.timeout(150)
def test_ten_parent_kills_leave_nothing_behind():
    result = run_scenario(WARM, rounds=10, delay=0.0, timeout=120)
    assert_clean(result)
