"""Scenarios of tests/faults/test_worker_death.py (run as ``python -m tests.faults.scenarios.worker_death <scenario>``)."""

import ctypes
import os
import random
import signal
import sys
import threading
import time

import multicore
from multicore import Task
from multicore.exceptions import WorkerLostError
from tests.faults._util import children_of, state_of, wait_for


def nap(x):
    time.sleep(x)
    return os.getpid()


def echo(x):
    return x


def stamp_then(how, path):
    """Records when it is about to die, then dies the way production processes do."""
    time.sleep(0.2)
    with open(path, "w") as f:
        f.write(repr(time.time()))
    if how == "exit":
        os._exit(3)
    if how == "abort":
        os.abort()
    if how == "segv":
        ctypes.string_at(0)
    raise AssertionError(how)


def pids():
    return [w["pid"] for w in multicore.pool_info()["workers"]]


def all_idle(n):
    ws = multicore.pool_info()["workers"]
    return len(ws) == n and all(w["pid"] and w["state"] == "idle" for w in ws)


def busy_pid():
    for w in multicore.pool_info()["workers"]:
        if w["state"] == "busy":
            return w["pid"]
    return None


def zombies():
    sup = multicore.pool_info()["supervisor_pid"]
    return [p for p in children_of(sup) if state_of(p) == "Z"]


def idle_workers_killed_are_reaped_and_replaced() -> None:
    multicore.initialize(workers=2)
    assert wait_for(lambda: all_idle(2), 10) is not None
    for _ in range(3):
        old = pids()
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        took = wait_for(lambda old=old: all_idle(2) and not set(pids()) & set(old), 5)
        assert took is not None and took < 1.0, (took, multicore.pool_info())
        assert zombies() == [], zombies()
        for pid in old:
            assert state_of(pid) is None, (pid, state_of(pid))  # reaped, not a zombie
        # The next Task runs on every worker, all of them new.
        seen = set()
        deadline = time.monotonic() + 10
        while seen != set(pids()):
            assert time.monotonic() < deadline, (seen, pids())
            t = Task()
            for _ in range(2):
                t.run(nap, 0.05)
            seen |= set(t.get(timeout=10))
        assert not seen & set(old)
    info = multicore.pool_info()
    assert sum(w["respawns"] for w in info["workers"]) == 6, info


def worker_sigkilled_mid_call_raises_worker_lost_promptly() -> None:
    multicore.initialize(workers=2)
    assert wait_for(lambda: all_idle(2), 10) is not None
    for round_ in range(3):
        t = Task()
        t.run(nap, 30)
        assert wait_for(lambda: busy_pid() is not None, 5) is not None
        victim = busy_pid()
        killer = threading.Timer(0.2, os.kill, (victim, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        try:
            t.get(timeout=30)
        except WorkerLostError as exc:
            took = time.monotonic() - started
            assert exc.pid == victim and exc.signal == signal.SIGKILL, (exc.pid, exc.signal)
            assert "SIGKILL" in str(exc) and str(victim) in str(exc), str(exc)
        else:
            raise AssertionError("no WorkerLostError")
        killer.join()
        assert took < 1.2, f"WorkerLostError {took - 0.2:.3f} s after the kill"
        assert wait_for(lambda victim=victim: all_idle(2) and victim not in pids(), 5) is not None, (
            multicore.pool_info()
        )
        t = Task()
        t.run(echo, round_)
        assert t.get(timeout=10) == [round_]


def worker_dying_mid_call_raises_worker_lost_promptly(how: str, path: str) -> None:
    status = {"exit": ("exitcode", 3), "abort": ("signal", signal.SIGABRT), "segv": ("signal", signal.SIGSEGV)}[how]
    multicore.initialize(workers=2)
    assert wait_for(lambda: all_idle(2), 10) is not None
    t = Task()
    t.run(echo, 1)
    t.run(stamp_then, how, path)
    t.run(echo, 3)
    try:
        t.get(timeout=30)
    except WorkerLostError as exc:
        raised = time.time()
        err = exc
    else:
        raise AssertionError("no WorkerLostError")
    with open(path) as f:
        died = float(f.read())
    assert raised - died < 1.0, f"WorkerLostError {raised - died:.3f} s after the death"
    assert getattr(err, status[0]) == status[1], (err.pid, err.exitcode, err.signal)
    assert str(err.pid) in str(err) and "stamp_then" in str(err), str(err)
    assert wait_for(lambda: all_idle(2), 5) is not None, multicore.pool_info()
    assert err.pid not in pids()
    t = Task()
    t.run(echo, "after")
    assert t.get(timeout=10) == ["after"]


# The stream's parameters: set by its scenario before the pool starts (workers inherit them).
STREAM = {"log": "", "payload": 0}


def work(task_no, i):
    # O_APPEND writes of one short line are atomic: the log shows every execution of every call.
    fd = os.open(STREAM["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{task_no}:{i}\n".encode())
    os.close(fd)
    time.sleep(random.random() * 0.002)
    return (task_no, i, "x" * STREAM["payload"])


def random_kills_during_a_stream_never_duplicate_or_misroute(log: str, payload: str, seconds: str) -> None:
    STREAM.update(log=log, payload=int(payload))
    multicore.initialize(workers=2)
    assert wait_for(lambda: all_idle(2), 10) is not None
    stop = threading.Event()
    kills = []

    def killer():
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.02, 0.08)):
            alive = [p for p in pids() if p]
            if alive:
                victim = rng.choice(alive)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                except ProcessLookupError:
                    pass

    threading.Thread(target=killer, daemon=True).start()
    delivered, lost = {}, 0
    deadline = time.monotonic() + float(seconds)
    task_no = 0
    while time.monotonic() < deadline:
        task_no += 1
        n = random.randint(1, 20)
        t = Task()
        for i in range(n):
            t.run(work, task_no, i)
        try:
            results = t.get(timeout=30)
        except WorkerLostError:
            lost += 1
            continue
        assert results == [(task_no, i, "x" * STREAM["payload"]) for i in range(n)], (task_no, results)
        for i in range(n):
            delivered[(task_no, i)] = delivered.get((task_no, i), 0) + 1
    stop.set()
    assert kills and lost, (len(kills), lost)
    runs = {}
    with open(log) as f:
        for line in f:
            runs[line.strip()] = runs.get(line.strip(), 0) + 1
    twice = {k: v for k, v in runs.items() if v > 1}
    assert not twice, f"calls executed more than once: {twice}"
    for (tn, i), count in delivered.items():
        assert count == 1 and runs.get(f"{tn}:{i}") == 1, (tn, i)
    time.sleep(0.2)
    assert wait_for(lambda: all_idle(2), 5) is not None, multicore.pool_info()
    t = Task()
    t.run(echo, "healed")
    assert t.get(timeout=10) == ["healed"]
    print("stream:", task_no, "tasks,", len(kills), "kills,", lost, "lost", file=sys.stderr)


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
