"""What every server test checks about the process tree, whatever the server."""

from __future__ import annotations

import time

from tests.servers.example import runner

POOL_SIZE = 2  # tests/settings.py and the example project leave "workers" to the CPUs: 2 here


def pool_pids(tree: dict[int, dict[int, list[int]]]) -> set[int]:
    """Every host, supervisor and multicore worker of ``tree``."""
    return {pid for host, sups in tree.items() for sup, pool in sups.items() for pid in (host, sup, *pool)}


def assert_one_pool_per_host(server) -> dict[int, dict[int, list[int]]]:
    """Each host (server worker) has exactly one child, its supervisor, whose POOL_SIZE children
    are the workers; it maps exactly one pool's memory (its own: no inherited copy); no other
    process of the server's tree (master, Apache's own children) holds or maps a pool."""
    tree = server.tree()
    assert len(tree) == server.workers, tree
    for host, supervisors in tree.items():
        assert len(supervisors) == 1, f"{server.name} worker {host} has {supervisors}"
        [(_supervisor, pool)] = supervisors.items()
        assert len(pool) == POOL_SIZE and all(runner.children(p) == [] for p in pool), tree
        assert runner.control_regions(host) == 1, (
            f"{server.name} worker {host} maps {runner.control_regions(host)} pools"
        )
    pooled = pool_pids(tree)
    others = [pid for pid in server.everything() if pid not in pooled]
    assert server.master in others
    assert [pid for pid in others if runner.control_regions(pid)] == [], f"pool memory outside the workers: {tree}"
    # The others' children are hosts or others: nothing that looks like a pool hangs off them.
    assert all(set(runner.children(pid)) <= set(others) | set(tree) for pid in others), tree
    return tree


def answers_from_every_host(server, tree, path: str = "/pool/", timeout: float = 30) -> dict[int, dict]:
    """``path`` answered by each host (requests spread by the server), keyed by the host's pid;
    each host reports the pool found under it in /proc, running."""
    answered: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(answered) < len(tree) and time.monotonic() < deadline:
        info = server.json(path)
        answered[info["pid"]] = info
    assert set(answered) == set(tree), (answered, tree)
    for pid, info in answered.items():
        [(supervisor, pool)] = tree[pid].items()
        assert info["running"] and info["supervisor_pid"] == supervisor and sorted(info["workers"]) == pool, info
    return answered


def orphans(server) -> list[int]:
    """Processes of this server's tree that were re-parented to init."""
    return [pid for pid in server.seen if runner.parent_of(pid) == 1]


def gone(pids, timeout: float = 30) -> bool:
    from tests.support import wait_until

    return wait_until(lambda: not any(runner.alive(p) for p in pids), timeout=timeout, interval=0.05)
