"""WSGI middleware that starts the process's pool before it serves, so no request pays for it.

::

    # wsgi.py
    from django.core.wsgi import get_wsgi_application
    from multicore.wsgi import MulticoreMiddleware

    application = MulticoreMiddleware(get_wsgi_application())

The pool belongs to the process that serves requests. The middleware starts it when it is
constructed in that process and waits until the workers are ready; where the application is
built in one process and served by forked children (gunicorn's ``preload_app``, uWSGI without
``lazy-apps``), it starts nothing in the loading process and each child starts its own pool:
from the gunicorn hooks (:mod:`multicore.gunicorn`, after the app is loaded), or else before
its first request.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from multicore._pool import lifecycle
from multicore._pool.lifecycle import warm_up
from multicore.exceptions import MulticoreTypeError

__all__ = ["MulticoreMiddleware", "warm_up"]


def pool_started_here() -> bool:
    return lifecycle.owned() is not None


def loading_in_preforking_master() -> bool:
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


class MulticoreMiddleware:
    """Wraps a WSGI application; starts the pool at construction in the serving process.

    ``warm_up=False`` leaves the pool to start lazily at the first ``Task()``.
    """

    def __init__(self, application: Callable, *, warm_up: bool = True) -> None:
        if not callable(application):
            raise MulticoreTypeError(
                f"MulticoreMiddleware wraps a WSGI application (a callable), got {type(application).__name__}; "
                "pass get_wsgi_application()"
            )
        self.application = application
        self.warm_up_enabled = warm_up
        if warm_up and not loading_in_preforking_master():
            self.warm_up()

    def warm_up(self) -> bool:
        return warm_up()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if self.warm_up_enabled and not pool_started_here():
            self.warm_up()  # a child forked after construction without the gunicorn hooks
        return self.application(environ, start_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.application, name)
