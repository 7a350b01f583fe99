"""The integration API: callbacks in the parent at pool start, in the supervisor and the workers,
and around every call (docs/design.md, "Integration hooks"). The Django app uses them for database
connections across forks; other integrations plug in the same way.

Register them before the pool starts: workers are forked from the state the parent had then. Each
registration returns its argument (so it works as a decorator); registering twice keeps one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "on_pool_start",
    "restart_pool_when",
    "on_supervisor_start",
    "on_worker_start",
    "on_worker_exit",
    "before_each_call",
    "after_each_call",
    "Hook",
    "Staleness",
]

Hook = Callable[[], None]
#: Returns why the running pool no longer fits this process, or None while it does.
Staleness = Callable[[], "str | None"]

_F = TypeVar("_F", Hook, Staleness)

pool_start: list[Hook] = []
pool_stale: list[Staleness] = []
supervisor_start: list[Hook] = []
worker_start: list[Hook] = []
worker_exit: list[Hook] = []
before_call: list[Hook] = []
after_call: list[Hook] = []


def _add(hooks: list[_F], fn: _F) -> _F:
    if fn not in hooks:
        hooks.append(fn)
    return fn


def on_pool_start(fn: Hook) -> Hook:
    """Runs in the parent just before it starts a pool (records what the workers will inherit)."""
    return _add(pool_start, fn)


def restart_pool_when(check: Staleness) -> Staleness:
    """``check()`` runs in the parent before a running pool is used; a reason (not None) means
    the workers were forked with state that no longer holds, and the pool is replaced first."""
    return _add(pool_stale, check)


def on_supervisor_start(fn: Hook) -> Hook:
    """Runs once in the supervisor right after it is forked (drop inherited sockets here)."""
    return _add(supervisor_start, fn)


def on_worker_start(fn: Hook) -> Hook:
    """Runs once in each new worker, before its first call (also after a respawn)."""
    return _add(worker_start, fn)


def on_worker_exit(fn: Hook) -> Hook:
    """Runs in a worker that leaves on purpose (shutdown, recycling); not after a crash."""
    return _add(worker_exit, fn)


def before_each_call(fn: Hook) -> Hook:
    """Runs in the worker before every call."""
    return _add(before_call, fn)


def after_each_call(fn: Hook) -> Hook:
    """Runs in the worker after every call, even one that raised."""
    return _add(after_call, fn)


def run(hooks: list[Hook]) -> None:
    """Runs every hook of one list, in registration order (the pool calls it)."""
    for fn in hooks:
        fn()
