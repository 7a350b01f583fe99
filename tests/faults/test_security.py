"""What docs/security.md promises, checked on a live pool: anonymous shared memory only, no
network listener, and pool files closed to everything but the pool's own processes."""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.security"


@pytest.mark.timeout(60)
def test_shared_memory_is_anonymous_and_nothing_listens():
    proc = run_module(SCENARIOS, "shared_memory_is_anonymous_and_nothing_listens", timeout=50)
    assert "OK" in proc.stdout.splitlines(), proc.stdout + proc.stderr
