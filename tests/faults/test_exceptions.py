"""Exceptions raised by a call come back as themselves, with the worker's traceback attached."""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.exceptions"


@pytest.mark.timeout(60)
def test_exceptions_come_back_with_type_args_and_remote_traceback():
    proc = run_module(SCENARIOS, "exceptions_come_back_with_type_args_and_remote_traceback", timeout=50)
    assert "OK" in proc.stdout.splitlines(), proc.stdout + proc.stderr
