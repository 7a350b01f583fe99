"""Workers replaced after N calls or above a memory size, in the middle of a long queue.

CPython's ``Pool(maxtasksperchild=...)`` can deadlock in this shape (cpython#115634): one worker,
a limit of 2, 100 queued items. Here retiring happens between calls while the rest stay queued.
"""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.recycling"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fn", ["ident", "big_ident"])
def test_recycling_after_n_tasks_in_a_long_queue(fn):
    proc = run_module(SCENARIOS, "recycling_after_n_tasks_in_a_long_queue", fn, timeout=80)
    assert "OK" in proc.stdout


@pytest.mark.timeout(90)
def test_recycling_above_a_memory_size():
    proc = run_module(SCENARIOS, "recycling_above_a_memory_size", timeout=80)
    assert "OK" in proc.stdout
