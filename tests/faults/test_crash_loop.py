"""Workers that die during start-up, every time: the pool gives up instead of forking forever."""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.crash_loop"


@pytest.mark.timeout(60)
def test_start_up_crash_loop_makes_the_pool_unavailable():
    proc = run_module(SCENARIOS, "start_up_crash_loop_makes_the_pool_unavailable", timeout=50)
    assert "OK" in proc.stdout.splitlines(), proc.stdout + proc.stderr
