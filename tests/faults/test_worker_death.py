"""Workers die (OOM killer, segfaults, os._exit, an operator's kill): calls fail fast, pools heal.

Every scenario (tests/faults/scenarios/worker_death.py) runs in a child interpreter under a hard
time limit (``run_module``); the child asserts and prints ``OK``.
"""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.worker_death"


def scenario(name: str, *args: str, timeout: float = 60) -> str:
    proc = run_module(SCENARIOS, name, *args, timeout=timeout)
    assert "OK" in proc.stdout.splitlines(), proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.timeout(60)
def test_idle_workers_killed_are_reaped_and_replaced():
    scenario("idle_workers_killed_are_reaped_and_replaced")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "abort", "segv"])
def test_worker_dying_mid_call_raises_worker_lost_promptly(how, tmp_path):
    scenario("worker_dying_mid_call_raises_worker_lost_promptly", how, str(tmp_path / "died"))


@pytest.mark.timeout(60)
def test_worker_sigkilled_mid_call_raises_worker_lost_promptly():
    scenario("worker_sigkilled_mid_call_raises_worker_lost_promptly")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("payload", [10, 20_000], ids=["inline", "segment"])
def test_random_kills_during_a_stream_never_duplicate_or_misroute(payload, tmp_path):
    """Results small enough for the slot, and big ones that travel in the worker's segment."""
    log = str(tmp_path / "runs.log")
    scenario("random_kills_during_a_stream_never_duplicate_or_misroute", log, str(payload), "6", timeout=80)
