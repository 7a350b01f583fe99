"""The dask tests run against one real cluster (scheduler + two single-threaded workers with
nannies on 127.0.0.1), started for this package and torn down after it whatever happens."""

from __future__ import annotations

import distributed  # noqa: F401 - the test extra installs it: missing, these tests fail rather than skip
import pytest

import multicore
from tests.batch.conftest import rows  # noqa: F401 - the batch tests' rows, for tests/dask/test_batch.py
from tests.dask.cluster import Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/dask/" in str(item.fspath):
            item.add_marker(pytest.mark.dask)


@pytest.fixture(scope="package")
def dask_cluster():
    cluster = Cluster(workers=2).start()
    try:
        yield cluster
    finally:
        multicore.shutdown()
        cluster.stop()


@pytest.fixture
def dask_backend(dask_cluster):
    """multicore initialized with backend="dask" on the session's cluster; shut down after."""
    multicore.shutdown()
    multicore.initialize(backend="dask", dask_address=dask_cluster.address)
    yield dask_cluster
    multicore.shutdown()
