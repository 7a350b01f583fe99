"""Apache + mod_wsgi in daemon mode (``mod_wsgi-express --processes 2 --threads 15``): one pool
per daemon process, shared by its threads, correct under concurrent requests; nothing left after
a graceful restart or a stop. Apache's own processes (parent and event workers) hold no pool,
and ``sys.executable`` being Apache does not matter: the pool forks, it never spawns Python."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.servers.example import runner
from tests.servers.pools import answers_from_every_host, assert_one_pool_per_host, gone, orphans, pool_pids
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)

PATHS = ["/keywords/", "/api/products/?limit=150&ordering=-price", "/pool/?hold=0.3"]


def test_threads_of_a_daemon_process_share_its_pool(serve, example_env):
    # Apache starts as root and its daemon processes change user: large payloads must still flow
    # (the list patch ships rows through shared-memory segments), so the patch must engage.
    server = serve("mod_wsgi", env={**example_env, "MULTICORE_LOG_LEVEL": "DEBUG"}, workers=2, threads=15)
    tree = assert_one_pool_per_host(server)
    answers_from_every_host(server, tree)
    reference = {path: server.json(path) for path in PATHS[:2]}

    def get(path):
        status, body, _ = server.request(path, timeout=90)
        assert status == 200, body[:300]
        return path, json.loads(body)

    # 60 requests from 30 client threads at once: both daemon processes serve many at a time.
    with ThreadPoolExecutor(30) as clients:
        results = list(clients.map(get, PATHS * 20))
    served_by = {}
    for path, body in results:
        if path == "/keywords/":
            assert body["parallel"] and body["keywords"] == reference[path]["keywords"]
            [(supervisor, pool)] = tree[body["served_by"]].items()
            assert set(body["computed_by"]) <= set(pool), (body, tree)  # its own process's pool
            served_by.setdefault(body["served_by"], 0)
            served_by[body["served_by"]] += 1
        elif path.startswith("/api/"):
            assert body == reference[path]
        else:
            [(supervisor, pool)] = tree[body["pid"]].items()
            assert body["running"] and body["supervisor_pid"] == supervisor
    assert set(served_by) <= set(tree)
    with open(server.log_file, errors="replace") as f:
        log = f.read()
    assert "parallel serialization of" not in log and log.count("ProductViewSet served in parallel") >= 20, log[-3000:]
    # Still one pool per daemon process, the same one: none per thread, none restarted.
    assert assert_one_pool_per_host(server) == tree


def test_graceful_restart_replaces_every_pool(serve):
    server = serve("mod_wsgi", workers=2, threads=15)
    first = assert_one_pool_per_host(server)
    server.graceful()
    assert gone(pool_pids(first)), {p: runner.parent_of(p) for p in pool_pids(first)}
    assert wait_until(server.pools_ready, timeout=60), server.tree()
    tree = assert_one_pool_per_host(server)
    assert set(tree).isdisjoint(first)
    answers_from_every_host(server, tree)
    assert orphans(server) == []


def test_stopping_apache_stops_every_pool(serve):
    server = serve("mod_wsgi", workers=2, threads=15)
    assert_one_pool_per_host(server)
    everything = server.everything()
    server.stop()
    assert not any(runner.alive(p) for p in everything)
    assert not any(runner.control_regions(p) for p in everything)
    assert not runner.port_open(server.port)
