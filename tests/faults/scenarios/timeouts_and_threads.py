"""Scenarios of tests/faults/test_timeouts_and_threads.py (run as ``python -m tests.faults.scenarios.timeouts_and_threads <scenario>``)."""

import threading
import time
import uuid

import multicore
from multicore import Task
from multicore.exceptions import TimeoutExceededError
from tests.faults._util import wait_for


def slow_echo(token, delay):
    time.sleep(delay)
    return token


def echo(token):
    return token


def timeout_cycles(cycles, failures):
    """Timeout a slow call, then check the next Task gets its own result and nothing else."""
    for _ in range(cycles):
        stale = uuid.uuid4().hex
        t = Task()
        t.run(slow_echo, stale, 5.0)
        try:
            t.get(timeout=0.05)
        except TimeoutExceededError:
            pass
        else:
            failures.append("slow call did not time out")
        fresh = [uuid.uuid4().hex for _ in range(3)]
        t = Task()
        for token in fresh:
            t.run(echo, token)
        got = t.get(timeout=30)
        if got != fresh:
            failures.append((fresh, got))


def hammer(n, failures):
    try:
        t = Task()
        expected = [(n, i) for i in range(1000)]
        for item in expected:
            t.run(echo, item)
        got = t.get(timeout=60)
        if got != expected:
            failures.append((n, "wrong results"))
        # The same again in small Tasks, which free and reuse slots constantly.
        for i in range(0, 1000, 50):
            t = Task()
            for j in range(i, i + 50):
                t.run(echo, (n, j))
            if t.get(timeout=60) != [(n, j) for j in range(i, i + 50)]:
                failures.append((n, i))
    except BaseException as exc:  # noqa: BLE001 - the main thread reports every failure
        failures.append((n, repr(exc)))


def timeouts_then_new_tasks_never_get_stale_results() -> None:
    multicore.initialize(workers=2)
    failures = []
    timeout_cycles(200, failures)
    assert failures == [], failures[:5]
    info = multicore.pool_info()
    # Every timeout killed the stuck worker; the pool replaced each one and is whole again.
    assert sum(w["respawns"] for w in info["workers"]) >= 190, info
    assert wait_for(lambda: all(w["state"] == "idle" for w in multicore.pool_info()["workers"]), 5) is not None


def run_threads(threads: list[threading.Thread], stuck: str) -> None:
    """Starts them all, then waits up to 120 s for each; ``stuck`` is the failure if one never ends."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), stuck


def timeouts_from_eight_threads_at_once_never_cross() -> None:
    multicore.initialize(workers=2)
    failures = []
    run_threads([threading.Thread(target=timeout_cycles, args=(25, failures)) for _ in range(8)], "a thread is stuck")
    assert failures == [], failures[:5]
    t = Task()
    t.run(echo, "after")
    assert t.get(timeout=10) == ["after"]


def sixteen_threads_a_thousand_calls_each() -> None:
    multicore.initialize(workers=2, slots=64)
    failures = []
    threads = [threading.Thread(target=hammer, args=(n, failures)) for n in range(16)]
    run_threads(threads, "deadlock: a thread never finished")
    assert failures == [], failures[:5]
    info = multicore.pool_info()
    assert info["slots_in_use"] == 0, info
    assert info["completed"] == 32000, info["completed"]


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
