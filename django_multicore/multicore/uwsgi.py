"""uWSGI: one pool per uWSGI worker, none in the master, with or without ``lazy-apps``.

In its default mode uWSGI imports the app in the master and forks the workers from C, so
Python's at-fork hooks never run in them. :class:`multicore.wsgi.MulticoreMiddleware` asks
:func:`loading_in_master`, starts nothing there, and chains :func:`post_fork` onto uWSGI's
post-fork hook: each worker starts its own pool right after it is forked, before it accepts a
request. (Should your code replace ``uwsgi.post_fork_hook`` afterwards, for instance by importing
``uwsgidecorators`` only after the middleware was built, each worker starts its pool before its
first request instead.) With ``lazy-apps`` each worker loads the app itself and the middleware
starts that worker's pool as it is built.

To start the pools from your own post-fork code instead::

    from uwsgidecorators import postfork
    import multicore.uwsgi

    postfork(multicore.uwsgi.post_fork)

A uWSGI worker that exits (``max-requests``, a reload, a stop) stops its pool at exit; one that
is killed (``harakiri``, SIGKILL) takes it along: its supervisor sees the death and stops the
workers within a quarter of a second. This module imports ``uwsgi``, which exists only inside
uWSGI.
"""

from __future__ import annotations

import sys

import uwsgi

from multicore._pool import lifecycle

__all__ = ["loading_in_master", "defer_to_workers", "post_fork"]

SERVER = "uWSGI"


def loading_in_master() -> bool:
    """True while the uWSGI master (or any process that is not a uWSGI worker, e.g. a mule)
    loads the app: uWSGI numbers its workers from 1."""
    return uwsgi.worker_id() == 0


def post_fork() -> None:
    """In a new uWSGI worker: starts its pool and waits for it (mules and the spooler start none)."""
    if uwsgi.worker_id() > 0:
        lifecycle.warm_up()


def _chain(previous):
    def multicore_post_fork() -> None:
        post_fork()  # first, while the worker has a single thread
        if previous is not None:
            previous()

    multicore_post_fork.multicore = True  # type: ignore[attr-defined]
    return multicore_post_fork


def defer_to_workers() -> None:
    """Arranges for :func:`post_fork` to run in each worker uWSGI forks from here on (idempotent)."""
    decorators = sys.modules.get("uwsgidecorators")
    if decorators is not None:  # its chain owns uwsgi.post_fork_hook: join it
        if not any(getattr(f, "f", f) is post_fork for f in decorators.postfork_chain):
            decorators.postfork(post_fork)
        return
    previous = getattr(uwsgi, "post_fork_hook", None)
    if not getattr(previous, "multicore", False):
        uwsgi.post_fork_hook = _chain(previous)
