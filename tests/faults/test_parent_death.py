"""The parent dies by SIGKILL (OOM killer, gunicorn's timeout, an operator): nothing survives it.

Each scenario runs in a child interpreter (tests/faults/scenarios/parent_death.py) that starts a
*victim* interpreter with a pool, kills it, and watches the aftermath through /proc.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_module


def run_scenario(victim: str, rounds: int, delay: float, timeout: float) -> dict:
    proc = run_module(
        "tests.faults.scenarios.parent_death", "orchestrate", victim, str(rounds), str(delay), timeout=timeout
    )
    line = next(text for text in proc.stdout.splitlines() if text.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def assert_clean(result: dict) -> None:
    for i, r in enumerate(result["rounds"]):
        assert r["gone_after"] is not None, f"round {i}: survivors after 5 s: {r['survivors']}"
        assert r["gone_after"] < 2.0, f"round {i}: processes outlived the parent for {r['gone_after']:.2f} s"
        assert r["survivors"] == [], f"round {i}: orphans (pid, ppid): {r['survivors']}"
    assert result["new_shm"] == [], f"left in /dev/shm: {result['new_shm']}"


@pytest.mark.timeout(90)
def test_idle_pool_dies_with_its_parent():
    result = run_scenario("warm", rounds=2, delay=0.0, timeout=60)
    assert_clean(result)
    # The victim really had a supervisor and two workers, so "all gone" means something.
    assert all(len(r["before"]) == 4 for r in result["rounds"]), result


@pytest.mark.timeout(90)
def test_busy_workers_die_with_their_parent():
    """Workers in the middle of 30 s calls: nobody can read those results any more."""
    result = run_scenario("busy", rounds=2, delay=0.0, timeout=60)
    assert_clean(result)
    assert all(len(r["before"]) == 4 for r in result["rounds"]), result


@pytest.mark.timeout(150)
def test_parent_killed_right_after_start():
    result = run_scenario("early", rounds=8, delay=0.03, timeout=120)
    assert_clean(result)


@pytest.mark.timeout(150)
def test_ten_parent_kills_leave_nothing_behind():
    result = run_scenario("warm", rounds=10, delay=0.0, timeout=120)
    assert_clean(result)
