"""Test helpers: workers that use the test database (docs/testing.md).

pytest (with pytest-django): in the root ``conftest.py``::

    pytest_plugins = ["multicore.testing"]

then use the ``multicore_db`` fixture in tests whose workers read the database. Django's test
runner: ``TEST_RUNNER = "multicore.testing.DiscoverRunner"``.

Workers read committed data only, through their own connections: use transactional tests
(``TransactionTestCase``, ``django_db(transaction=True)``), not ``TestCase``, whose test data
lives in a transaction that is never committed.
"""

from __future__ import annotations

from typing import Any

from django.test.runner import DiscoverRunner as _DjangoDiscoverRunner

import multicore

__all__ = ["refresh_pool", "DiscoverRunner", "multicore_db"]


def refresh_pool() -> bool:
    """Restarts the pool on the next ``Task()`` if it was started with other databases (or
    with database access blocked). ``Task()`` does this check itself; call it to be explicit."""
    from multicore.db import connections

    return connections.refresh_pool()


class DiscoverRunner(_DjangoDiscoverRunner):
    """Django's test runner, stopping the workers before test databases are destroyed (their
    open connections would make PostgreSQL refuse to DROP DATABASE)."""

    def setup_databases(self, **kwargs: Any) -> Any:
        multicore.shutdown()  # workers forked before now would use the non-test databases
        return super().setup_databases(**kwargs)

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        multicore.shutdown()
        super().teardown_databases(old_config, **kwargs)


try:
    import pytest
except ImportError:  # Django's test runner only
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def _multicore_stop_before_db_teardown(django_db_setup: Any) -> Any:
        # Set up after django_db_setup, so torn down before it: the workers close their
        # connections before the test databases are dropped.
        yield
        multicore.shutdown()

    _DB_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server", "django_db_serialized_rollback"}

    @pytest.fixture(autouse=True)
    def _multicore_db_guard(request: pytest.FixtureRequest) -> None:
        if request.node.get_closest_marker("django_db") or _DB_FIXTURES & set(request.fixturenames):
            request.getfixturevalue("_multicore_stop_before_db_teardown")

    @pytest.fixture
    def multicore_db(transactional_db: Any, _multicore_stop_before_db_teardown: Any) -> Any:
        """Transactional database access, and a pool whose workers use the test database.

        Data the test writes (outside ``atomic()``) is committed, so workers see it. Returns
        ``multicore.pool_info``.
        """
        refresh_pool()
        return multicore.pool_info
