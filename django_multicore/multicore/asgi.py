"""ASGI middleware that starts the process's pool before it serves, so no request pays for it.

::

    # asgi.py
    from django.core.asgi import get_asgi_application
    from multicore.asgi import MulticoreMiddleware

    application = MulticoreMiddleware(get_asgi_application())

The ASGI twin of :class:`multicore.wsgi.MulticoreMiddleware`: it starts the pool when it is
constructed in the serving process (granian and uvicorn workers import the app themselves), and
in a pre-forking master (gunicorn with ``preload_app`` and an ASGI worker class) starts none, so
each worker starts its own. It does not rely on lifespan events (Django does not handle them, and
not every server sends them): a worker whose pool is not running yet starts it at its first event
of any kind, in a thread, so the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from multicore import servers
from multicore._pool.lifecycle import warm_up

__all__ = ["MulticoreMiddleware"]


class MulticoreMiddleware:
    """Wraps an ASGI application; starts the pool at construction in the serving process.

    ``warm_up=False`` leaves the pool to start lazily at the first ``Task()``.
    """

    def __init__(self, application: Callable[..., Awaitable[None]], *, warm_up: bool = True) -> None:
        if not callable(application):
            raise TypeError(
                f"MulticoreMiddleware wraps an ASGI application (a callable), got {type(application).__name__}; "
                "pass get_asgi_application()"
            )
        self.application = application
        self.warm_up_enabled = warm_up
        if warm_up:
            servers.warm_up_unless_master()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if self.warm_up_enabled and not servers.pool_started_here():
            # A worker forked after construction: fork and wait off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, warm_up)
        await self.application(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.application, name)
