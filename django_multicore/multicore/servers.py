"""Which process of a web server is this: the one question the WSGI and ASGI middleware ask.

A pool belongs to the process that serves requests. Pre-forking servers load the app in a master
and fork the serving workers from it (gunicorn's ``preload_app``, uWSGI without ``lazy-apps``):
that master must start no pool, and each worker starts its own. Each server's probe lives in its
own module (:mod:`multicore.gunicorn`, :mod:`multicore.uwsgi`) and is asked only when that server
is running, which its module in ``sys.modules`` tells.
"""

from __future__ import annotations

import importlib
import logging
import sys
from types import ModuleType

from multicore._pool import lifecycle

logger = logging.getLogger("multicore")

# A module only a running server has imported -> multicore's module for that server.
_PROBES = {"gunicorn.arbiter": "multicore.gunicorn", "uwsgi": "multicore.uwsgi"}


def preforking_master() -> ModuleType | None:
    """multicore's module for the pre-forking server whose master is loading the app in this
    process (it has ``loading_in_master()`` and ``defer_to_workers()``), or None."""
    for marker, name in _PROBES.items():
        if marker in sys.modules:
            module = importlib.import_module(name)
            if module.loading_in_master():
                return module
    return None


def pool_started_here() -> bool:
    return lifecycle.owned() is not None


def warm_up_unless_master() -> None:
    """Starts this process's pool and waits for it, except in a pre-forking master, where it
    starts none and lets each worker start its own (the server module says how)."""
    master = preforking_master()
    if master is None:
        lifecycle.warm_up()
        return
    logger.debug("multicore: %s master is loading the app; each worker will start its own pool", master.SERVER)
    master.defer_to_workers()
