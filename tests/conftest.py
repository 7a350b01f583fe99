"""Fixtures for every test: a fresh two-worker pool (`pool`), and PostgreSQL-only tests
deselected unless MULTICORE_TEST_DB=postgres. Helpers live in tests/support.py."""

from __future__ import annotations

import pytest

import multicore
from tests.support import ON_POSTGRES, wait_until, worker_pids


@pytest.fixture
def pool():
    """A fresh two-worker pool in this process, shut down afterwards."""
    multicore.shutdown()
    multicore.initialize(workers=2)
    assert wait_until(lambda: len(worker_pids()) == 2)
    yield multicore.pool_info
    multicore.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]
