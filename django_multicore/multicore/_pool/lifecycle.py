"""One pool per process: start it, find it, stop it, and forget it in forked children.

A pool belongs to the process that started it (its owner pid). A child forked from that process
(a gunicorn worker under ``preload_app``, a user's ``os.fork()``) drops its inherited copy at fork
time and starts its own pool on first use, so it never touches its parent's workers. A child
forked from C, where no at-fork hook runs (uWSGI's workers, Apache's processes), still holds the
copy: every entry point below recognises it by its owner pid and drops it the same way.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import warnings
from typing import Any

from multicore import _core, backends, hooks
from multicore import options as _options
from multicore._pool import process
from multicore.exceptions import ConfigurationError


class PoolHandle:
    __slots__ = ("core", "options", "workers", "pid", "started_at")

    def __init__(self, core: _core.Pool, options: _options.Options, workers: int) -> None:
        self.core = core
        self.options = options
        self.workers = workers
        self.pid = os.getpid()
        self.started_at = time.monotonic()


logger = logging.getLogger("multicore")

_pool: PoolHandle | None = None
_forking_supervisor = False
_lock = threading.RLock()
_lock_pid = os.getpid()


def _locked() -> threading.RLock:
    """This process's lock. A C-level fork runs no at-fork hook to renew it, and a copy taken
    while another thread held it would stay held forever: a new process gets a new lock."""
    global _lock, _lock_pid
    if _lock_pid != os.getpid():
        _lock, _lock_pid = threading.RLock(), os.getpid()
    return _lock


def in_worker() -> bool:
    return process.role != "parent"


def usable_cpus() -> int:
    return _core.usable_cpus()


# The CPU count changes only when the affinity mask or a cgroup quota does, and reading it opens
# those files (about 60 µs): a guard asked on every Task() and every DRF list would pay that each
# time, six times the cost of a whole round trip.
_CPUS_TTL = 1.0
_cpus_read: tuple[float, int] = (float("-inf"), 1)


def recent_usable_cpus() -> int:
    """:func:`usable_cpus` as read at most a second ago, for the per-call guards. Sizing a new
    pool reads it afresh."""
    global _cpus_read
    now = time.monotonic()
    if now - _cpus_read[0] > _CPUS_TTL:
        _cpus_read = (now, _core.usable_cpus())
    return _cpus_read[1]


_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4


def _make_dumpable() -> None:
    """Pool processes read each other's large payloads through ``/proc/<pid>/fd`` (docs/design.md),
    which the kernel allows only for a "dumpable" process. A process that changed its user (Apache's
    mod_wsgi daemon processes, a server started as root with ``--user``/``--uid``) is not, so no
    process could read its payloads, not even its own workers. It becomes dumpable again: the state
    of every process that did not change user, open to processes of the same user only. The pool's
    processes inherit the flag."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 1:
        if libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
            logger.warning(
                "multicore: could not make process %s dumpable (%s): its pool's workers cannot read its large payloads",
                os.getpid(),
                os.strerror(ctypes.get_errno()),
            )
        else:
            logger.info(
                "multicore: process %s changed its user; made it dumpable again so that its "
                "pool's processes can read each other's payloads",
                os.getpid(),
            )


def _start(options: _options.Options) -> PoolHandle:
    global _forking_supervisor
    hooks.run(hooks.pool_start)
    _make_dumpable()
    workers = options.workers or usable_cpus()
    core = _core.Pool(
        workers=workers,
        slots=options.slots,
        inline_size=options.inline_size,
        worker_spin_us=options.worker_spin_us,
        parent_spin_us=options.parent_spin_us,
        max_payload=options.max_payload,
        segment_keep_bytes=options.segment_keep_bytes,
    )
    _forking_supervisor = True
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a threaded process. This is the one fork the
            # parent does, into a supervisor that only forks workers from its single thread.
            # Only that warning is silenced: any other raised while forking still reaches the user.
            warnings.filterwarnings("ignore", r"This process .* is multi-threaded, use of fork\(\)", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            process.supervisor_main(core, options)
    finally:
        _forking_supervisor = False
    core.supervisor_started(pid)
    return PoolHandle(core, options, workers)


def initialize(workers: int | None = None, *, force: bool = False, **options: Any) -> None:
    """Starts this process's pool (idempotent). Keywords override the configured options.

    ``force`` is accepted for code written for the original django-multicore
    (https://github.com/praekelt/django-multicore), whose
    ``initialize()`` started workers only when it guessed a server was running; this one always
    starts the pool, so ``force`` changes nothing (docs/compatibility.md).
    """
    if isinstance(workers, bool):  # the original's positional initialize(True) meant force=True
        workers = None
    del force
    if in_worker():
        return
    global _pool
    opts = _options.current(workers=workers, **options)
    if backends.initialize(options.get("backend"), opts):
        return  # a remote backend (docs/dask.md) took it; the local pool starts on its first use
    with _locked():
        _drop_unusable()
        if _pool is None:
            _pool = _start(opts)


def ensure_pool() -> PoolHandle:
    """The running pool, started with the configured options if there is none, it died, or it
    no longer fits this process (see ``hooks.restart_pool_when``)."""
    global _pool
    pool = _pool
    if pool is not None and pool.pid == os.getpid() and pool.core.alive() and _stale() is None:
        return pool
    with _locked():
        _drop_unusable()
        if _pool is None:
            _pool = _start(_options.current())
        return _pool


def current() -> PoolHandle | None:
    return _pool


def owned() -> PoolHandle | None:
    """This process's own pool, or None. (A forked supervisor or worker still holds its parent's
    handle in ``_pool``; it must never act on it.)"""
    pool = _pool
    return pool if pool is not None and pool.pid == os.getpid() else None


def _stale() -> str | None:
    for check in hooks.pool_stale:
        reason = check()
        if reason is not None:
            return reason
    return None


def _forget_inherited() -> None:
    """Under the lock: drops a pool this process inherited through a fork that ran no at-fork hook,
    without touching its owner's workers (they stay its owner's, and die with it)."""
    global _pool
    pool = _pool
    if pool is not None and pool.pid != os.getpid() and not in_worker():
        logger.debug("multicore: process %s dropped the pool inherited from process %s", os.getpid(), pool.pid)
        pool.core.forget_in_child()
        _pool = None


def _drop_unusable() -> None:
    """Under the lock: forgets an inherited or dead pool, and stops one that no longer fits this
    process."""
    global _pool
    _forget_inherited()
    if _pool is None:
        return
    if not _pool.core.alive():
        _pool.core.shutdown(0.0)
        _pool = None
    elif (reason := _stale()) is not None:
        logger.info("multicore: restarting the pool: %s", reason)
        _pool.core.shutdown(_pool.options.shutdown_grace)
        _pool = None


def shutdown() -> None:
    """Stops this process's workers and frees the shared memory (idempotent)."""
    global _pool
    backends.shutdown()
    with _locked():
        _forget_inherited()
        pool, _pool = _pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.core.shutdown(pool.options.shutdown_grace)


def default_workers() -> int:
    """The worker count of this process's pool, or the one it would start with (with the dask
    backend as default: the cluster's worker threads)."""
    remote = backends.workers()
    return remote if remote is not None else local_workers()


def local_workers() -> int:
    """The worker count of this process's local pool, or the one it would start with, whatever
    the default backend (the DRF patch always runs on the local pool)."""
    pool = owned()
    if pool is not None:
        return pool.workers
    return _options.current().workers or usable_cpus()


def range_size(count: int, min_range_size: int = 0, number_of_workers: int | None = None) -> int:
    """How many of ``count`` items each range gets when splitting them about one range per worker
    (``ranges()``, ``keyset_ranges()``); raises ConfigurationError for bad arguments."""
    if isinstance(min_range_size, bool) or not isinstance(min_range_size, int) or min_range_size < 0:
        raise ConfigurationError(f"min_range_size must be an integer >= 0, got {min_range_size!r}")
    if number_of_workers is not None and (
        isinstance(number_of_workers, bool) or not isinstance(number_of_workers, int) or number_of_workers < 1
    ):
        raise ConfigurationError(
            f"number_of_workers must be a positive integer (or None for the pool's size), got {number_of_workers!r}"
        )
    return max(math.ceil(count / (number_of_workers or default_workers())), min_range_size, 1)


def warm_up(timeout: float = 10.0) -> bool:
    """Starts this process's pool now instead of on the first ``Task()`` (idempotent), and waits
    up to ``timeout`` seconds for every worker. True when all workers are ready.

    Call it where a server process starts serving (a gunicorn ``post_worker_init`` hook, the WSGI
    middleware), so the first request does not pay for the fork. Not in a process that forks
    servers afterwards: each process needs its own pool. Does nothing inside a multicore worker.
    """
    if in_worker():
        return False
    ensure_pool()  # always the local pool: the DRF patch and the servers' hooks use it
    deadline = time.monotonic() + timeout
    while True:
        info = _local_info()
        workers = info["workers"]
        if info["running"] and workers and all(w["pid"] and w["state"] in ("idle", "busy") for w in workers):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def pool_info() -> dict[str, Any]:
    """A snapshot of this process's pool: worker pids and states, counters, options. With the
    dask backend as default: the scheduler and its workers (docs/dask.md)."""
    remote = backends.info()
    return remote if remote is not None else _local_info()


def _local_info() -> dict[str, Any]:
    pool = owned()
    if pool is None and _pool is not None:
        with _locked():
            _forget_inherited()
    if pool is None:
        return {"backend": "local", "running": False, "workers": [], "pid": os.getpid()}
    info = pool.core.info()
    info["running"] = pool.core.alive() and info["state"] == "running"
    info["pid"] = pool.pid
    info["options"] = pool.options
    info["backend"] = "local"
    return info


def _after_fork_in_child() -> None:
    global _pool
    _locked()  # another thread may have held the lock at fork time
    if _forking_supervisor or _pool is None:
        return
    _pool.core.forget_in_child()
    _pool = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
