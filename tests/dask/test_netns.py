"""A dask worker in its own network namespace: nothing relies on the worker sharing a host (its
loopback, its ports) with the client. The test makes the namespace and a veth pair and removes
them after; it skips only where network namespaces cannot be created (not root, no CAP_NET_ADMIN).
"""

from __future__ import annotations

import os
import subprocess

import pytest

import multicore
from multicore.exceptions import RemoteTraceback
from tests.dask import helpers
from tests.dask.cluster import Cluster
from tests.testapp import tasks


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespace():
    tag = os.getpid() % 100000
    ns, host_if, ns_if = f"multicore-dask-{tag}", f"mcd{tag}h", f"mcd{tag}n"
    subnet = f"10.213.{tag % 250}"
    try:
        made = _ip("netns", "add", ns, check=False)
    except FileNotFoundError:
        pytest.skip("no `ip` command (iproute2): network namespaces cannot be created here")
    if made.returncode != 0:
        pytest.skip(f"network namespaces cannot be created here: {made.stderr.strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{subnet}.2/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns, f"{subnet}.1", f"{subnet}.2"
    finally:
        _ip("link", "del", host_if, check=False)  # removes both ends of the pair
        _ip("netns", "del", ns, check=False)
        assert ns not in _ip("netns", "list").stdout


def test_a_worker_in_its_own_network_namespace(namespace):
    ns, host_ip, ns_ip = namespace
    cluster = Cluster(workers=0, host=host_ip)
    try:
        cluster.start()
        cluster.add_worker("isolated", host=ns_ip, prefix=["ip", "netns", "exec", ns])
        cluster.wait_for_workers(1, timeout=60)
        multicore.shutdown()
        multicore.initialize(backend="dask", dask_address=cluster.address)
        [worker] = multicore.pool_info()["workers"]
        assert worker["host"] == ns_ip and worker["address"].startswith(f"tcp://{ns_ip}:")

        task = multicore.Task()
        task.run(helpers.net_namespace)
        for i in range(10):
            task.run(helpers.add, i, c=100)
        task.run(tasks.database_name)
        netns, *sums, database = task.get(timeout=60)
        assert netns != os.stat("/proc/self/ns/net").st_ino  # it really ran in the other namespace
        assert sums == [100 + i for i in range(10)]
        from django.conf import settings

        assert database == str(settings.DATABASES["default"]["NAME"])  # the plugin's DATABASES

        task = multicore.Task()
        task.run(helpers.fail, "far away")
        with pytest.raises(helpers.Boom, match="far away") as info:
            task.get(timeout=60)
        assert isinstance(info.value.__cause__, RemoteTraceback)
    finally:
        multicore.shutdown()
        cluster.stop()
