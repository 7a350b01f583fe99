"""multicore: a shared-memory process pool that lets Django, and plain Python, use every CPU core.

This module only re-exports the public API; see README.md and docs/.
"""

from multicore._core import __version__
from multicore._pool.lifecycle import initialize, pool_info, shutdown, warm_up
from multicore._pool.task import Task
from multicore.utils import ranges

__all__ = ["Task", "initialize", "shutdown", "pool_info", "warm_up", "ranges", "__version__"]
