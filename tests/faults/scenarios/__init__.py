"""Fault scenarios, each run in a fresh interpreter: ``python -m tests.faults.scenarios.<module> <name> [args]``.

A scenario is a function of its module; it asserts as it goes, and the runner prints ``OK`` when
it returns (on the real stdout). Functions the workers call are defined at module level before the pool starts, so
workers (forks of the scenario's process) find them in ``__main__``. ``MULTICORE_TEST_WATCHDOG``
(seconds, set by ``tests.support.run_module``) arms faulthandler to dump every stack and exit
before the test's own timeout, so a hang fails with a stack dump instead of stalling CI.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any


def main(scenarios: Mapping[str, Any]) -> None:
    """Runs the scenario named by ``sys.argv[1]`` with the remaining arguments, then prints OK."""
    watchdog = os.environ.get("MULTICORE_TEST_WATCHDOG")
    if watchdog:
        faulthandler.dump_traceback_later(float(watchdog), exit=True)
    name, *args = sys.argv[1:]
    scenario: Callable[..., None] = scenarios[name]
    scenario(*args)
    sys.__stdout__.write("OK\n")  # the real stdout: a scenario may have replaced sys.stdout
    sys.__stdout__.flush()
