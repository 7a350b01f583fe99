"""granian (``--workers 2``), its WSGI and ASGI interfaces: one pool per granian worker process,
started before it serves (the ASGI middleware does not wait for lifespan events), none in
granian's main process, nothing left when it stops."""

from __future__ import annotations

import json
import sys

import pytest

from tests.servers.example import runner
from tests.servers.pools import answers_from_every_host, assert_one_pool_per_host

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_each_granian_worker_has_its_own_pool(serve, interface):
    server = serve("granian", workers=2, interface=interface)
    tree = assert_one_pool_per_host(server)
    # granian forks its workers where multiprocessing's default start method is fork and spawns
    # them on CPython 3.14, whose default (forkserver) cannot share its listening socket; either
    # way each worker builds its own pool (the spawned ones beside multiprocessing's resource tracker).
    spawned = sys.version_info >= (3, 14)
    assert all(("multiprocessing.spawn" in runner.cmdline(h)) == spawned for h in tree), {
        h: runner.cmdline(h) for h in tree
    }
    answers_from_every_host(server, tree)
    for _ in range(4):
        status, body, _ = server.request("/api/products/?limit=200")
        assert status == 200 and len(json.loads(body)["results"]) == 200
    keywords = server.json("/keywords/")
    [(_supervisor, pool)] = tree[keywords["served_by"]].items()
    assert keywords["parallel"] and set(keywords["computed_by"]) <= set(pool)
    assert sum(info["tasks_done"] for info in answers_from_every_host(server, tree).values()) > 0
    assert assert_one_pool_per_host(server) == tree
    everything = server.everything()
    server.stop()
    assert not any(runner.alive(p) or runner.control_regions(p) for p in everything)
    assert not runner.port_open(server.port)
