"""Threads busy in the caller while the pool forks (tests/faults/test_fork_with_threads.py)."""

import concurrent.futures
import contextlib
import logging
import os
import signal
import sys
import threading
import time

import multicore
from multicore import Task
from tests.faults._util import wait_for

log = logging.getLogger("hostile")
stop = threading.Event()


def hold_logging_lock():
    while not stop.is_set():
        with logging._lock:  # the module lock every handler/logger change takes
            time.sleep(0.0005)
        log.warning("spam")  # and the handler's own lock


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
    logging.getLogger(f"other.{i}").setLevel(logging.INFO)  # takes logging._lock
    return os.getpid()


def _replaced(killed: set[int]):
    def check() -> bool:
        return all(w["state"] == "idle" and w["pid"] not in killed for w in multicore.pool_info()["workers"])

    return check


def fork_while_caller_threads_hold_locks(cycles: str) -> None:
    assert sys.warnoptions == ["error::DeprecationWarning"], sys.warnoptions
    # Everything printed goes to /dev/null, so the spam is free; the lock is what matters.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.propagate = False
    threads = [
        threading.Thread(target=hold_logging_lock, daemon=True),
        threading.Thread(target=spam_print, daemon=True),
    ]
    for t in threads:
        t.start()
    executor = concurrent.futures.ThreadPoolExecutor(4)
    for i in range(100000):
        executor.submit(pool_work, i)

    for _cycle in range(int(cycles)):
        multicore.initialize(workers=2)
        for _round in range(3):
            t = Task()
            for i in range(8):
                t.run(in_worker, i)
            pids = set(t.get(timeout=20))
            assert pids, pids
            # Respawn: the replacements are forked by the supervisor while our threads keep going.
            killed = {w["pid"] for w in multicore.pool_info()["workers"] if w["pid"]}
            for pid in killed:
                with contextlib.suppress(ProcessLookupError):  # already gone is as good
                    os.kill(pid, signal.SIGKILL)
            # Idle replacements: a killed worker may still read "idle" until the supervisor reaps it.
            assert wait_for(_replaced(killed), 10) is not None
        multicore.shutdown()

    stop.set()
    for t in threads:
        t.join(5)
    executor.shutdown(wait=True, cancel_futures=True)


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
