"""Gunicorn server hooks: one pool per gunicorn worker, none in the master, nothing left behind.

In ``gunicorn.conf.py``::

    from multicore.gunicorn import *  # noqa: F401,F403 - the hooks below, by their gunicorn names

or assign the ones you need (``post_worker_init = multicore.gunicorn.post_worker_init``) and
call them from your own hooks. What each does:

* ``when_ready``/``child_exit`` (master): stop a pool the master may have started while
  loading the app (``preload_app``); the master must not hold one, or every worker would
  inherit the bookkeeping of processes it does not own.
* ``post_fork`` (worker): nothing to undo: a forked process forgets an inherited pool by itself;
  it logs the worker so the pool's lifetime can be followed in gunicorn's log.
* ``post_worker_init`` (worker, after the app is loaded): starts the worker's pool and waits
  for it, so the workers are copies of a process with Django ready and no request pays the fork.
* ``worker_int``, ``worker_abort`` (SIGINT/SIGQUIT, SIGABRT on timeout) and ``worker_exit``
  (max_requests recycling, SIGTERM, any exit): stop the worker's pool.

If a gunicorn worker is killed outright (SIGKILL after a timeout, the OOM killer), its
supervisor sees the death and kills the workers within a quarter of a second (a call still
running gets no longer: nobody is left to read its result).
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

import multicore
from multicore._pool import lifecycle
from multicore._pool.lifecycle import warm_up

__all__ = ["when_ready", "post_fork", "post_worker_init", "worker_int", "worker_abort", "worker_exit", "child_exit"]

SERVER = "gunicorn"


def loading_in_master() -> bool:
    """True while a gunicorn master loads the app for its workers (``preload_app``).

    The innermost gunicorn object on the stack tells: a forked worker's stack still holds the
    arbiter's frames below its own.
    """
    arbiter = sys.modules.get("gunicorn.arbiter")
    if arbiter is None:
        return False
    from gunicorn.workers.base import Worker

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Worker):
            return False
        if isinstance(owner, arbiter.Arbiter):
            return True
        frame = frame.f_back
    return False


def defer_to_workers() -> None:
    """Nothing to arrange: gunicorn forks from Python (the at-fork hooks run), and each worker
    starts its pool in ``post_worker_init``, or else the middleware does before its first request."""


def _drop_master_pool(server: Any) -> None:
    if lifecycle.owned() is not None:
        server.log.warning(
            "multicore: the gunicorn master (pid %s) had started a pool, probably while loading "
            "the app (preload_app); stopping it: each worker starts its own",
            os.getpid(),
        )
        multicore.shutdown()


def when_ready(server: Any) -> None:
    _drop_master_pool(server)


def child_exit(server: Any, worker: Any) -> None:
    _drop_master_pool(server)


def post_fork(server: Any, worker: Any) -> None:
    server.log.debug("multicore: gunicorn worker %s will start its own pool", worker.pid)


def post_worker_init(worker: Any) -> None:
    if not warm_up():
        worker.log.warning("multicore: the pool of gunicorn worker %s was not ready in time", os.getpid())
        return
    info = multicore.pool_info()
    worker.log.info(
        "multicore: gunicorn worker %s started its pool (supervisor %s, workers %s)",
        os.getpid(),
        info.get("supervisor_pid"),
        [w["pid"] for w in info["workers"]],
    )


def _stop(worker: Any) -> None:
    if lifecycle.current() is not None:
        multicore.shutdown()


def worker_int(worker: Any) -> None:
    _stop(worker)


def worker_abort(worker: Any) -> None:
    _stop(worker)


def worker_exit(server: Any, worker: Any) -> None:
    # Runs in the exiting worker (and in the master for a worker that vanished: a no-op there).
    _stop(worker)
