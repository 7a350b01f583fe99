"""Where a Task's calls run: the local shared-memory pool (the default) or a remote backend.

This is the seam between the public API and the backends. ``Task()``, ``initialize()``,
``shutdown()``, ``pool_info()`` and ``ranges()`` ask it which backend applies and hand a remote
backend its work; the local pool (``multicore._pool``) knows nothing about the others. Nothing here
imports a remote backend's packages until that backend is used.

The backend of a use is, first match wins: the ``backend=`` argument (``Task(backend="dask")``),
the one chosen by ``initialize(backend=...)`` (until ``shutdown()``), the configured option
(``MULTICORE["backend"]``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from multicore import options as _options
from multicore.exceptions import ConfigurationError

LOCAL = "local"
DASK = "dask"
NAMES = (LOCAL, DASK)

_lock = threading.Lock()
_calls = threading.local()  # .running: this thread runs a call for a remote backend (a dask worker)
_chosen: str | None = None  # set by initialize(backend=...), forgotten by shutdown()


def check_name(name: Any) -> str:
    if name not in NAMES:
        raise ConfigurationError(f"multicore backend must be one of {', '.join(map(repr, NAMES))}, got {name!r}")
    return name


def in_remote_call() -> bool:
    """True inside a call run for a remote backend: ``Task()`` then returns None (no nested pools)."""
    return getattr(_calls, "running", False)


def resolve(backend: str | None = None, options: _options.Options | None = None) -> str:
    """The backend a use runs on (see the module docstring for the order)."""
    if backend is not None:
        return check_name(backend)
    if _chosen is not None:
        return _chosen
    return (options or _options.current()).backend


def _module(name: str) -> Any:
    if name == DASK:
        from multicore.backends import dask

        return dask
    raise ConfigurationError(f"no remote backend {name!r}")


def initialize(explicit: str | None, options: _options.Options) -> bool:
    """``initialize()``'s part: remembers an explicit choice and connects a remote backend.
    True when a remote backend took it (then no local pool is started)."""
    global _chosen
    name = resolve(explicit, options)
    if explicit is not None:
        with _lock:
            _chosen = name
    if name == LOCAL:
        return False
    _module(name).connect(options)
    return True


def task(name: str, timeout: float | None, options: _options.Options) -> Any:
    """A Task-like object of remote backend ``name`` (or None where ``Task()`` returns None)."""
    return _module(name).make_task(timeout, options)


def info() -> dict[str, Any] | None:
    """``pool_info()`` of the default backend when it is a remote one, else None."""
    name = resolve()
    return None if name == LOCAL else _module(name).info()


def workers() -> int | None:
    """How many calls the default remote backend runs at once (for ``ranges()``), else None."""
    name = resolve()
    return None if name == LOCAL else _module(name).workers()


def shutdown() -> None:
    """Closes every remote backend this process connected, and forgets ``initialize()``'s choice."""
    global _chosen
    with _lock:
        _chosen = None
    import sys

    if "multicore.backends.dask" in sys.modules:
        sys.modules["multicore.backends.dask"].close()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
