"""multicore: a shared-memory process pool that lets Django, and plain Python, use every CPU core.

This module only re-exports the public API; see README.md and docs/. ``NUMBER_OF_WORKERS``,
``BUFFER_DEPTH``, ``MMAP_SIZE`` and ``PY3`` are kept for code written for the original
django-multicore (docs/compatibility.md).
"""

from typing import Any as _Any

from multicore._compat import MMAP_SIZE as MMAP_SIZE
from multicore._compat import PY3 as PY3
from multicore._core import __version__
from multicore._pool.lifecycle import initialize, pool_info, shutdown, warm_up
from multicore._pool.task import Task
from multicore.utils import ranges

__all__ = ["Task", "initialize", "shutdown", "pool_info", "warm_up", "ranges", "__version__"]


def __getattr__(name: str) -> _Any:
    # Computed on access: they follow the configured (or running) pool, as the original's did.
    from multicore import _compat

    if name == "NUMBER_OF_WORKERS":
        return _compat.number_of_workers()
    if name == "BUFFER_DEPTH":
        return _compat.buffer_depth()
    raise AttributeError(f"module 'multicore' has no attribute {name!r}")
