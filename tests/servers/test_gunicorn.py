"""Gunicorn with multicore's hooks and WSGI middleware: one pool per gunicorn worker, none in the
master, no process left behind however a gunicorn worker leaves."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.servers.example import runner
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)


def orphans(server) -> list[int]:
    """Processes of this server's tree that were re-parented to init."""
    return [pid for pid in server.seen if runner.parent_of(pid) == 1]


def assert_one_pool_per_worker(server) -> dict:
    tree = server.tree()
    assert len(tree) == server.workers, tree
    for worker, supervisors in tree.items():
        assert len(supervisors) == 1, f"gunicorn worker {worker} has {supervisors}"
        [(_supervisor, pool)] = supervisors.items()
        assert len(pool) == 2 and all(runner.children(p) == [] for p in pool), tree
    # The master's only children are gunicorn workers: no supervisor of its own.
    assert runner.children(server.master) == sorted(tree)
    return tree


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_each_gunicorn_worker_has_its_own_pool(serve, worker_class, preload):
    server = serve(workers=2, worker_class=worker_class, threads=4 if worker_class == "gthread" else 1, preload=preload)
    tree = assert_one_pool_per_worker(server)
    # Every gunicorn worker that answers reports the pool we found under it, already running
    # before its first request (the /pool/ view runs no Task).
    answered = {}
    deadline = time.monotonic() + 30
    while len(answered) < 2 and time.monotonic() < deadline:
        info = server.json("/pool/")
        answered[info["pid"]] = info
    for pid, info in answered.items():
        [(supervisor, pool)] = tree[pid].items()
        assert info["running"] and info["supervisor_pid"] == supervisor and sorted(info["workers"]) == pool
    # The patched endpoint runs on the worker's own pool.
    status, body, _ = server.request("/api/products/?limit=200")
    assert status == 200 and len(json.loads(body)["results"]) == 200


def test_patched_responses_match_unpatched_under_gunicorn(serve, example_env):
    patched = serve(workers=1)
    plain = serve(env={**example_env, "MULTICORE_DRF_PATCH": "0"}, workers=1)
    for path in [
        "/api/products/?limit=300&tag=x",
        "/api/product-pages/?page=2&page_size=150",
        "/api/product-cursor/?page_size=120",
        "/api/product-list/?category=garden&ordering=-price",
        "/api/products/?search=lamp&ordering=name&limit=400",
        "/api/categories/",
    ]:
        before = patched.json("/pool/")["tasks_done"]
        a, b = patched.request(path), plain.request(path)
        assert a[0] == b[0] == 200
        # Hyperlinks carry each server's port: compare with it normalised.
        assert a[1].replace(str(patched.port).encode(), b"PORT") == b[1].replace(str(plain.port).encode(), b"PORT")
        engaged = patched.json("/pool/")["tasks_done"] > before
        assert engaged == (path != "/api/categories/"), path  # 8 categories < drf-min-items


def test_max_requests_recycling_leaves_nothing(serve):
    server = serve(workers=1, max_requests=4)
    first = server.tree()
    old = {pid for sups in first.values() for sup, pool in sups.items() for pid in (sup, *pool)} | set(first)
    for _ in range(6):
        server.request("/pool/")
    assert wait_until(lambda: not any(runner.alive(p) for p in old), timeout=15), [p for p in old if runner.alive(p)]
    assert wait_until(server.pools_ready, timeout=30)
    assert set(server.tree()).isdisjoint(first)
    assert_one_pool_per_worker(server)
    assert orphans(server) == []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGQUIT", "SIGABRT", "SIGKILL", "timeout"])
def test_gunicorn_worker_exit_leaves_nothing(serve, how):
    server = serve(workers=1, timeout=2)
    [(worker, supervisors)] = server.tree().items()
    [(supervisor, pool)] = supervisors.items()
    if how == "timeout":
        os.kill(worker, signal.SIGSTOP)  # no heartbeat: the master aborts, then kills it
    else:
        os.kill(worker, getattr(signal, how))
    gone = wait_until(lambda: not any(runner.alive(p) for p in (worker, supervisor, *pool)), timeout=30)
    assert gone, {p: runner.parent_of(p) for p in (worker, supervisor, *pool)}
    assert orphans(server) == []
    assert wait_until(server.pools_ready, timeout=30)
    assert_one_pool_per_worker(server)


def test_stopping_gunicorn_stops_every_pool(serve):
    server = serve(workers=2, worker_class="gthread", threads=2, preload=True)
    assert_one_pool_per_worker(server)
    everything = set(runner.descendants(server.master))
    assert len(everything) == 2 * 4
    server.stop()
    assert not any(runner.alive(p) for p in everything)
