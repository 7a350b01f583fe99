"""TLS: a cluster started with certificates (``tls://``); multicore's client reaches it through
Dask's own security settings, and without them it cannot."""

from __future__ import annotations

import dask
import pytest

import multicore
from multicore.exceptions import MulticoreError
from tests.dask import helpers
from tests.dask.cluster import Cluster, tls_files


def test_a_tls_cluster_through_dask_security_settings(tmp_path):
    cluster = Cluster(workers=1, tls=tls_files(str(tmp_path)))
    try:
        with dask.config.set(cluster.client_config()):
            cluster.start()
            assert cluster.address.startswith("tls://")
            multicore.shutdown()
            multicore.initialize(backend="dask", dask_address=cluster.address)
            task = multicore.Task()
            for i in range(4):
                task.run(helpers.add, i, 1)
            assert task.get(timeout=60) == [1, 2, 3, 4]
            info = multicore.pool_info()
            assert info["scheduler"] == cluster.address
            assert all(w["address"].startswith("tls://") for w in info["workers"])
            multicore.shutdown()
        # Without the certificates, no connection (and a multicore error, not a hang).
        with pytest.raises(MulticoreError, match=cluster.address):
            multicore.initialize(backend="dask", dask_address=cluster.address)
    finally:
        multicore.shutdown()
        cluster.stop()
