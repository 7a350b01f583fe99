"""ASGI servers with several worker processes, each awaiting its own pool from async views:
``uvicorn --workers 2`` (a manager that *spawns* fresh interpreters and respawns dead ones) and
``gunicorn -k uvicorn_worker.UvicornWorker -w 2`` (a master that *forks* them, with and without
``--preload``). One pool per server worker, none in the manager or master; the async view
(``/async-report/``, ``arun()``/``aget()``) answers as the sync one does, from the pool of the
worker that served it; nothing is left after SIGTERM, a restart, a killed server worker, or a
client that hangs up while its view awaits the pool."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.servers.example import runner
from tests.servers.pools import answers_from_every_host, assert_one_pool_per_host, gone, orphans, pool_pids
from tests.support import wait_until

pytestmark = pytest.mark.timeout(240)

ASGI_APP = "exampleproject.asgi:application"
UVICORN_WORKER = "uvicorn_worker.UvicornWorker"

SERVERS = {
    "uvicorn": lambda serve: serve("uvicorn", workers=2),
    "gunicorn-uvicorn": lambda serve: serve(workers=2, worker_class=UVICORN_WORKER, app=ASGI_APP),
    "gunicorn-uvicorn-preload": lambda serve: serve(workers=2, worker_class=UVICORN_WORKER, app=ASGI_APP, preload=True),
}


@pytest.fixture(params=["uvicorn", "gunicorn-uvicorn"])
def asgi_server(request, serve):
    return SERVERS[request.param](serve)


@pytest.mark.parametrize("kind", list(SERVERS))
def test_each_server_worker_awaits_its_own_pool(serve, kind):
    server = SERVERS[kind](serve)
    tree = assert_one_pool_per_host(server)
    answers_from_every_host(server, tree)
    reference = server.json("/report/")["categories"]  # the sync view, run()/get()
    assert len(reference) == 8 and sum(row["products"] for row in reference) == 400
    served = set()
    deadline = time.monotonic() + 30
    while served != set(tree) and time.monotonic() < deadline:
        report = server.json("/async-report/")
        [(_supervisor, pool)] = tree[report["served_by"]].items()
        assert report["parallel"] and report["categories"] == reference, report
        assert set(report["computed_by"]) <= set(pool) and len(report["computed_by"]) >= 1, (report, pool)
        served.add(report["served_by"])
    assert served == set(tree)
    inline = server.json("/async-report/?inline=1")
    assert not inline["parallel"] and inline["computed_by"] == [inline["served_by"]]
    assert inline["categories"] == reference
    assert assert_one_pool_per_host(server) == tree  # no pool came or went meanwhile
    everything = server.everything()
    server.stop()
    assert not any(runner.alive(p) or runner.control_regions(p) for p in everything)
    assert not runner.port_open(server.port)


def test_restart_replaces_every_pool(asgi_server):
    server = asgi_server
    first = assert_one_pool_per_host(server)
    old = pool_pids(first)
    server.restart()
    assert gone(old, timeout=60), {p: runner.cmdline(p) for p in old if runner.alive(p)}
    assert wait_until(server.pools_ready, timeout=60), server.tree()
    tree = assert_one_pool_per_host(server)
    assert set(tree).isdisjoint(first)
    report = server.json("/async-report/")
    [(_supervisor, pool)] = tree[report["served_by"]].items()
    assert report["parallel"] and set(report["computed_by"]) <= set(pool)
    assert orphans(server) == []


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_server_worker_that_dies_takes_its_pool(asgi_server, how):
    server = asgi_server
    first = assert_one_pool_per_host(server)
    victim = min(first)
    [(supervisor, pool)] = first[victim].items()
    os.kill(victim, getattr(signal, how))
    assert gone([victim, supervisor, *pool]), {p: runner.parent_of(p) for p in (victim, supervisor, *pool)}
    assert orphans(server) == []
    # The manager (master) starts a replacement with a pool of its own; the other worker kept its.
    assert wait_until(server.pools_ready, timeout=60), server.tree()
    tree = assert_one_pool_per_host(server)
    survivor = max(first)
    assert victim not in tree and tree[survivor] == first[survivor]
    answers_from_every_host(server, tree)


def test_a_client_that_hangs_up_stops_its_calls(asgi_server):
    """Django cancels an async view whose client disconnects: aget() is cancelled, and the pool
    worker sleeping in the view's Task is killed and replaced long before its 60 s."""
    server = asgi_server
    tree = assert_one_pool_per_host(server)
    workers = {pid for sups in tree.values() for pool in sups.values() for pid in pool}
    client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    client.sendall(f"GET /async-report/?hold=60 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    time.sleep(1.5)  # the view has submitted its calls; one worker sleeps in the first
    client.close()
    began = time.monotonic()
    assert wait_until(lambda: any(not runner.alive(p) for p in workers), timeout=20), "no pool worker was stopped"
    stopped = [p for p in workers if not runner.alive(p)]
    assert len(stopped) == 1 and time.monotonic() - began < 20, stopped
    # Its pool replaced it; the same server worker goes on serving, from the same supervisor.
    assert wait_until(server.pools_ready, timeout=30), server.tree()
    after = assert_one_pool_per_host(server)
    assert set(after) == set(tree) and {h: set(s) for h, s in after.items()} == {h: set(s) for h, s in tree.items()}
    answers_from_every_host(server, after)
    assert server.json("/async-report/")["parallel"]
