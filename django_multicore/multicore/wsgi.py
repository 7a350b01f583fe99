"""WSGI middleware that starts the process's pool before it serves, so no request pays for it.

::

    # wsgi.py
    from django.core.wsgi import get_wsgi_application
    from multicore.wsgi import MulticoreMiddleware

    application = MulticoreMiddleware(get_wsgi_application())

The pool belongs to the process that serves requests. The middleware starts it when it is
constructed in that process and waits until the workers are ready; where the application is
built in a master and served by forked workers (gunicorn's ``preload_app``, uWSGI without
``lazy-apps``), it starts nothing in the master (:mod:`multicore.servers`) and each worker starts
its own pool: from the gunicorn hooks (:mod:`multicore.gunicorn`), from the uWSGI post-fork hook
the middleware chains (:mod:`multicore.uwsgi`), or else before its first request. docs/servers.md
has the configuration for each server; :mod:`multicore.asgi` is the ASGI twin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from multicore import servers
from multicore._pool.lifecycle import warm_up
from multicore.exceptions import MulticoreTypeError

__all__ = ["MulticoreMiddleware", "warm_up"]


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
        if warm_up:
            servers.warm_up_unless_master()

    def warm_up(self) -> bool:
        return warm_up()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if self.warm_up_enabled and not servers.pool_started_here():
            self.warm_up()  # a worker forked after construction whose server ran no hook of ours
        return self.application(environ, start_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.application, name)
