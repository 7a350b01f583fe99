"""Threads busy in the caller while the pool forks: children must not inherit a held lock.

The supervisor is forked while a thread holds the logging lock, another is inside print() (the
stdout buffer's lock) and a ThreadPoolExecutor is running; workers are then forked (at start and
on every respawn) and must still log, print and finish. The child interpreter runs with
DeprecationWarning as an error, so a fork-with-threads warning reaching users fails the test.
"""

from __future__ import annotations

import pytest

from tests.support import run_python

SCENARIO = r'''
import concurrent.futures, logging, os, signal, sys, threading, time, warnings
import multicore
from multicore import Task
from tests.faults._util import wait_for

assert sys.warnoptions == ["error::DeprecationWarning"], sys.warnoptions
# Everything printed goes to /dev/null, so the spam is free; the lock is what matters.
sys.stdout = open(os.devnull, "w")
log = logging.getLogger("hostile")
log.addHandler(logging.StreamHandler(open(os.devnull, "w")))
log.propagate = False
stop = threading.Event()

def hold_logging_lock():
    while not stop.is_set():
        with logging._lock:          # the module lock every handler/logger change takes
            time.sleep(0.0005)
        log.warning("spam")          # and the handler's own lock

def spam_print():
    while not stop.is_set():
        print("x" * 200)

def pool_work(i):
    time.sleep(0.001)
    return i

def in_worker(i):
    print("worker prints", i)
    sys.stdout.flush()
    logging.getLogger("hostile").warning("worker logs %d", i)
    logging.getLogger("other.%d" % i).setLevel(logging.INFO)   # takes logging._lock
    return os.getpid()

threads = [threading.Thread(target=hold_logging_lock, daemon=True), threading.Thread(target=spam_print, daemon=True)]
for t in threads:
    t.start()
executor = concurrent.futures.ThreadPoolExecutor(4)
futures = [executor.submit(pool_work, i) for i in range(100000)]

for cycle in range({cycles}):
    multicore.initialize(workers=2)
    for round_ in range(3):
        t = Task()
        for i in range(8):
            t.run(in_worker, i)
        pids = set(t.get(timeout=20))
        assert pids, pids
        # Respawn: the replacements are forked by the supervisor while our threads keep going.
        for pid in [w["pid"] for w in multicore.pool_info()["workers"] if w["pid"]]:
            os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: all(w["state"] == "idle" for w in multicore.pool_info()["workers"]), 10) is not None
    multicore.shutdown()

stop.set()
for t in threads:
    t.join(5)
executor.shutdown(wait=True, cancel_futures=True)
sys.__stdout__.write("OK\n")
'''


@pytest.mark.timeout(120)
def test_fork_while_caller_threads_hold_locks():
    proc = run_python(SCENARIO.format(cycles=10), timeout=100, env={"PYTHONWARNINGS": "error::DeprecationWarning"})
    assert "OK" in proc.stdout.splitlines(), proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "DeprecationWarning" not in proc.stderr, proc.stderr[-4000:]
