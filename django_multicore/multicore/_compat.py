"""Names kept so code written for the original django-multicore / PyPI ``multicore`` 0.1.1 runs unchanged.

The original (https://github.com/praekelt/django-multicore) exposed these at ``multicore.``;
docs/compatibility.md says what each means here. None of them is needed by new code.
"""

from __future__ import annotations

#: The original's output buffer size (bytes). Results here have no such limit; kept for imports only.
MMAP_SIZE = 100000

#: The original ran on Python 2 and 3; this one runs on Python 3 only.
PY3 = True


def number_of_workers() -> int:
    """``multicore.NUMBER_OF_WORKERS``: the worker count of this process's pool, or the one it
    would start with (the original: ``multiprocessing.cpu_count()`` at import)."""
    from multicore._pool.lifecycle import default_workers

    return default_workers()


def buffer_depth() -> int:
    """``multicore.BUFFER_DEPTH``: calls in flight at once (the original: 8 per worker; here the
    ``slots`` option)."""
    from multicore import options
    from multicore._pool import lifecycle

    pool = lifecycle.owned()
    return pool.options.slots if pool is not None else options.current().slots
