from multicore._lifecycle import initialize, pool_info, shutdown
from multicore._task import Task
from multicore._core import __version__

__all__ = ["Task", "initialize", "shutdown", "pool_info", "__version__"]
