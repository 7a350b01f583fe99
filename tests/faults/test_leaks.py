"""Nothing leaks: processes, file descriptors, /dev/shm entries, memory."""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.leaks"


@pytest.mark.timeout(120)
def test_fifty_initialize_shutdown_cycles_leak_nothing():
    proc = run_module(SCENARIOS, "fifty_initialize_shutdown_cycles_leak_nothing", timeout=110)
    assert "OK" in proc.stdout


@pytest.mark.timeout(150)
def test_a_million_tiny_calls_keep_memory_flat():
    """RSS after warm-up vs at the end, parent and workers, with a tolerance for allocator noise."""
    proc = run_module(SCENARIOS, "a_million_tiny_calls_keep_memory_flat", timeout=140)
    assert "OK" in proc.stdout
