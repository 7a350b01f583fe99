"""Database connections across multicore's forks; the Django app installs this (docs/database.md).

A forked process inherits the parent's open connections: same socket, same server session. If
the child used or closed one, it would talk over the parent's session (closing sends the
server a Terminate message and kills the parent's connection). So, as Celery's Django fixup
does, the supervisor and each worker cut the inherited sockets off without any network IO and
start with fresh connection wrappers; connections then open lazily, one per worker. A worker
keeps its connection across calls whatever ``CONN_MAX_AGE`` says for requests (a worker lives
long and serves many calls; connecting per call would cost more than most calls), for
``MULTICORE["worker-conn-max-age"]`` seconds (None: the worker's life), with health checks on,
so a connection the server dropped is replaced before the next call uses it; it is checked
before and after each call like Django does around a request.

The parent records which databases the pool was started with (a pool-start hook), and restarts the
pool on the next ``Task()`` if they changed: the test runner swaps NAME for the test database
after the pool may already be running.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

from django.conf import settings as django_settings
from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from multicore import hooks
from multicore import settings as multicore_settings
from multicore._pool import lifecycle
from multicore.exceptions import MulticoreWarning

logger = logging.getLogger("multicore.django")

# Inherited driver connections and pools, referenced forever so they are never closed or
# finalized in this process (that would be network IO on the parent's session). Our processes
# leave through os._exit, which runs no finalizers.
_inherited: list[Any] = []

_installed = False
_started_with: tuple | None = None  # databases the running pool's workers were forked with
_warned_memory: set[str] = set()


def _cut_off(raw: Any) -> None:
    """Keeps ``raw`` alive and points its socket at /dev/null: nothing in this process can reach
    the parent's session through it, and a driver's own close() writes nowhere."""
    _inherited.append(raw)
    try:
        fd = raw.fileno()
    except Exception:  # noqa: BLE001 - sqlite3 has no socket; a closed connection has no fd
        return
    if not isinstance(fd, int) or fd < 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def reset_inherited_connections() -> None:
    """Replaces every inherited connection wrapper with a fresh, unconnected one (in a fork)."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _cut_off(conn.connection)
        # A new wrapper, rather than close(): the old one may be inside the parent's atomic block
        # and would refuse to reconnect ("closed in transaction").
        connections[conn.alias] = connections.create_connection(conn.alias)
    for alias in connections:
        # Django 5.1+ "pool" option: class-level pools of connections opened by the parent.
        pools = getattr(type(connections[alias]), "_connection_pools", None)
        if pools:
            for pool in list(pools.values()):
                _inherited.append(pool)
                for raw in list(getattr(pool, "_pool", ())):
                    _cut_off(raw)
            pools.clear()


def _quietly(fn: Any, what: str) -> None:
    # A failing hook must not take the worker down: the next call gets a fresh connection anyway.
    try:
        fn()
    except Exception:
        logger.exception("multicore: %s failed in pid %d", what, os.getpid())


def _before_call() -> None:
    for conn in connections.all(initialized_only=True):
        conn.queries_log.clear()  # like request_started: DEBUG must not grow memory per call
    close_old_connections()


def _on_supervisor_start() -> None:
    reset_inherited_connections()


def _on_worker_start() -> None:
    reset_inherited_connections()
    _worker_policy()


def _worker_policy() -> None:
    """A worker's connections: kept ``"worker-conn-max-age"`` seconds, health-checked.

    Set on this worker's own wrappers (a copy of each settings dict, so ``settings.DATABASES``
    is not changed), before any of them connects.
    """
    max_age = multicore_settings.get_config()["worker-conn-max-age"]
    for alias in connections:
        conn = connections[alias]
        if (conn.settings_dict.get("OPTIONS") or {}).get("pool"):
            continue  # Django's connection pool keeps connections itself (and refuses CONN_MAX_AGE)
        conn.settings_dict = {**conn.settings_dict, "CONN_MAX_AGE": max_age, "CONN_HEALTH_CHECKS": True}


def _on_worker_exit() -> None:
    _quietly(connections.close_all, "closing database connections")


def _on_before_call() -> None:
    _quietly(_before_call, "close_old_connections() before a call")


def _on_after_call() -> None:
    _quietly(close_old_connections, "close_old_connections() after a call")


def database_fingerprint() -> tuple:
    """What decides which database a forked worker reaches: the DATABASES a worker would use,
    and whether database access is allowed at all (pytest-django blocks it by swapping
    ``BaseDatabaseWrapper.ensure_connection``)."""
    # Runs on every Task(): plain tuples, compared by value, no sorting or formatting.
    dbs = tuple(
        (alias, db.get("ENGINE"), db.get("NAME"), db.get("HOST"), db.get("PORT"))
        for alias, db in django_settings.DATABASES.items()
    )
    return dbs, BaseDatabaseWrapper.ensure_connection


def in_memory_sqlite(db: Mapping[str, Any]) -> bool:
    name = db.get("NAME")
    return (
        "sqlite3" in str(db.get("ENGINE"))
        and isinstance(name, str)
        and (name in ("", ":memory:") or "mode=memory" in name)
    )


def _record_databases() -> None:
    """A pool is starting: remember which databases its workers will be forked with."""
    global _started_with
    try:
        _started_with = database_fingerprint()
    except Exception:  # noqa: BLE001 - never block a pool start; unknown means "do not restart"
        _started_with = None
    _warn_in_memory()


def databases_changed() -> str | None:
    """Why the running pool's workers reach other databases than this process does now (the
    test runner swapped NAME for the test database), or None."""
    if _started_with is None or _started_with == database_fingerprint():
        return None
    return "DATABASES changed since it started (test database?)"


def refresh_pool() -> bool:
    """Stops this process's pool if its workers were forked with other databases than the
    current ones (so the next Task() starts workers on the current ones). True if it did.

    ``Task()`` makes the same check itself (``hooks.restart_pool_when``).
    """
    if lifecycle.owned() is None or databases_changed() is None:
        return False
    logger.info("multicore: DATABASES changed since the pool started (test database?); restarting it")
    lifecycle.shutdown()
    return True


def _warn_in_memory() -> None:
    for alias, db in django_settings.DATABASES.items():
        name = f"{alias}:{db.get('NAME')}"
        if in_memory_sqlite(db) and name not in _warned_memory:
            _warned_memory.add(name)
            warnings.warn(
                f"DATABASES[{alias!r}] is an in-memory SQLite database: multicore workers are other "
                "processes and will see an empty database. Use a file (for tests: "
                f'DATABASES[{alias!r}]["TEST"]["NAME"]); see docs/testing.md',
                MulticoreWarning,
                stacklevel=_user_stacklevel(),
            )


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised by our caller at the first frame outside
    multicore (the user's ``Task()`` or ``initialize()``, however deep the pool start ran)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def install() -> None:
    """Registers the hooks (idempotent). Called from ``MulticoreConfig.ready()``."""
    global _installed
    if _installed:
        return
    _installed = True
    hooks.on_supervisor_start(_on_supervisor_start)
    hooks.on_worker_start(_on_worker_start)
    hooks.on_worker_exit(_on_worker_exit)
    hooks.before_each_call(_on_before_call)
    hooks.after_each_call(_on_after_call)
    hooks.on_pool_start(_record_databases)
    hooks.restart_pool_when(databases_changed)
