"""uWSGI (``--master --processes 2``): one pool per uWSGI worker, none in the master, with and
without ``lazy-apps``, with threads; nothing left after a worker is recycled, killed by harakiri,
or the server stops.

Without ``lazy-apps`` the master loads the app and forks the workers from C, so Python's at-fork
hooks never run in them: the middleware must start nothing in the master, and each worker must
start its own pool (the post-fork hook the middleware registers).
"""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.servers.example import runner
from tests.servers.pools import answers_from_every_host, assert_one_pool_per_host, gone, orphans, pool_pids
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("threads", [1, 4], ids=["processes", "threads"])
@pytest.mark.parametrize("lazy_apps", [False, True], ids=["default", "lazy-apps"])
def test_each_uwsgi_worker_has_its_own_pool(serve, lazy_apps, threads):
    # start() returns once every worker's pool runs, before any request.
    server = serve("uwsgi", workers=2, lazy_apps=lazy_apps, threads=threads)
    tree = assert_one_pool_per_host(server)
    answers_from_every_host(server, tree)
    for _ in range(4):  # the patched endpoint, on the serving worker's own pool
        status, body, _ = server.request("/api/products/?limit=200")
        assert status == 200 and len(json.loads(body)["results"]) == 200
    assert sum(info["tasks_done"] for info in answers_from_every_host(server, tree).values()) > 0
    assert assert_one_pool_per_host(server) == tree  # no request started another pool


def test_max_requests_recycling_leaves_nothing(serve):
    server = serve("uwsgi", workers=1, max_requests=3)
    first = server.tree()
    old = pool_pids(first)
    # Requests until a new worker answers (uWSGI recycles none younger than a second).
    assert wait_until(lambda: server.json("/pool/")["pid"] not in first, timeout=30, interval=0.2)
    assert gone(old), {p: runner.parent_of(p) for p in old}
    assert wait_until(server.pools_ready, timeout=30), server.tree()
    assert set(server.tree()).isdisjoint(first)
    assert_one_pool_per_host(server)
    assert orphans(server) == []


def test_harakiri_killing_a_worker_mid_request_leaves_nothing(serve):
    server = serve("uwsgi", workers=1, harakiri=2)
    [(worker, supervisors)] = server.tree().items()
    [(supervisor, pool)] = supervisors.items()
    # The request keeps a multicore worker busy for 60 s; harakiri kills the uWSGI worker first.
    with pytest.raises((http.client.HTTPException, ConnectionError, socket.timeout)):
        status, body, _ = server.request("/pool/?hold=60", timeout=30)
        raise AssertionError(f"the request was answered ({status}): {body[:200]!r}")
    assert gone([worker, supervisor, *pool]), {p: runner.parent_of(p) for p in (worker, supervisor, *pool)}
    assert orphans(server) == []
    assert wait_until(server.pools_ready, timeout=30), server.tree()
    tree = assert_one_pool_per_host(server)
    answers_from_every_host(server, tree)


def test_stopping_uwsgi_stops_every_pool(serve):
    server = serve("uwsgi", workers=2, threads=4)
    assert_one_pool_per_host(server)
    everything = server.everything()
    assert len(everything) == 1 + 2 * 4
    server.stop()
    assert not any(runner.alive(p) for p in everything)
    assert not any(runner.control_regions(p) for p in everything)
    assert not runner.port_open(server.port)
