"""Timeouts and many parent threads: no result ever reaches a Task it does not belong to.

Each call returns a token unique to its Task; a stale result (a timed-out call finishing late)
or a foreign one (another thread's) would show up as a wrong token.
"""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.timeouts_and_threads"


@pytest.mark.timeout(150)
def test_timeouts_then_new_tasks_never_get_stale_results():
    proc = run_module(SCENARIOS, "timeouts_then_new_tasks_never_get_stale_results", timeout=140)
    assert "OK" in proc.stdout


@pytest.mark.timeout(150)
def test_timeouts_from_eight_threads_at_once_never_cross():
    proc = run_module(SCENARIOS, "timeouts_from_eight_threads_at_once_never_cross", timeout=140)
    assert "OK" in proc.stdout


@pytest.mark.timeout(150)
def test_sixteen_threads_a_thousand_calls_each():
    """More calls in flight than slots (16 x 1,000 > 64): run() applies backpressure, never fails."""
    proc = run_module(SCENARIOS, "sixteen_threads_a_thousand_calls_each", timeout=140)
    assert "OK" in proc.stdout
