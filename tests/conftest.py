"""Shared test harness.

Anything that could hang runs in a child interpreter under a hard wall-clock limit
(`run_python`), with faulthandler armed, so a hang fails one test with a stack dump instead of
stalling CI. In-process tests get a fresh two-worker pool from the `pool` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import multicore

# PostgreSQL-only tests (marked ``postgres``) run when MULTICORE_TEST_DB=postgres and are
# deselected otherwise: never skipped, so a PostgreSQL run that cannot reach the server fails.
ON_POSTGRES = os.environ.get("MULTICORE_TEST_DB", "sqlite") == "postgres"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, timeout: float = 60, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (cwd = repo root) and returns the finished process."""
    prelude = f"import faulthandler, sys; faulthandler.dump_traceback_later({timeout - 2}, exit=True)\n"
    full_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"child exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def worker_pids() -> list[int]:
    return [w["pid"] for w in multicore.pool_info()["workers"] if w["pid"]]


@pytest.fixture
def pool():
    """A fresh two-worker pool in this process, shut down afterwards."""
    multicore.shutdown()
    multicore.initialize(workers=2)
    assert wait_until(lambda: len(worker_pids()) == 2)
    yield multicore.pool_info
    multicore.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]
