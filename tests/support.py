"""Helpers the tests share: child interpreters under a hard time limit, process and pool probes.

Anything that could hang runs in a child interpreter (`run_python`, `run_module`) with
faulthandler armed, so a hang fails one test with a stack dump instead of stalling CI.
Nothing here imports Django.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import multicore

# PostgreSQL-only tests (marked ``postgres``) run when MULTICORE_TEST_DB=postgres and are
# deselected otherwise: never skipped, so a PostgreSQL run that cannot reach the server fails.
ON_POSTGRES = os.environ.get("MULTICORE_TEST_DB", "sqlite") == "postgres"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}


def _finish(proc: subprocess.CompletedProcess[str], check: bool) -> subprocess.CompletedProcess[str]:
    if check and proc.returncode != 0:
        raise AssertionError(f"child exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_python(
    code: str, timeout: float = 60, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (cwd = repo root) and returns the finished process."""
    prelude = f"import faulthandler, sys; faulthandler.dump_traceback_later({timeout - 2}, exit=True)\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=_child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _finish(proc, check)


def run_module(
    module: str, *args: str, timeout: float = 60, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m module args...`` (cwd = repo root), with faulthandler dumping the stacks
    and exiting shortly before ``timeout``."""
    watchdog = {"MULTICORE_TEST_WATCHDOG": str(timeout - 2)}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=_child_env({**watchdog, **(env or {})}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _finish(proc, check)


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
