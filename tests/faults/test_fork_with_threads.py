"""Threads busy in the caller while the pool forks: children must not inherit a held lock.

The supervisor is forked while a thread holds the logging lock, another is inside print() (the
stdout buffer's lock) and a ThreadPoolExecutor is running; workers are then forked (at start and
on every respawn) and must still log, print and finish. The child interpreter runs with
DeprecationWarning as an error, so a fork-with-threads warning reaching users fails the test.
"""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.fork_with_threads"


@pytest.mark.timeout(120)
def test_fork_while_caller_threads_hold_locks():
    proc = run_module(
        SCENARIOS,
        "fork_while_caller_threads_hold_locks",
        "10",
        timeout=100,
        env={"PYTHONWARNINGS": "error::DeprecationWarning"},
    )
    assert "OK" in proc.stdout.splitlines(), proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "DeprecationWarning" not in proc.stderr, proc.stderr[-4000:]
