"""The code that runs in the supervisor and in each worker process, after fork.

Both leave only through ``os._exit``: they are forks of the parent, and running its atexit
handlers or finalizers (database connections, temp files, gunicorn's state) would act on the
parent's resources.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from typing import Any

from multicore import _core, hooks
from multicore._pool import forksafe, wire
from multicore.exceptions import SerializationError, SharedMemoryError
from multicore.options import Options

logger = logging.getLogger("multicore.worker")

#: "parent", "supervisor" or "worker": what this process is to multicore.
role = "parent"

# Set by retire_after_call(): this worker leaves after replying to its current call.
_retire_requested = False


def retire_after_call() -> None:
    """In a worker: leave after the current call's reply; the supervisor forks a replacement.

    For code running in a call that knows this process should not take more work (multicore.batch
    recycles a worker whose memory grew too much). Does nothing outside a worker.
    """
    global _retire_requested
    if role == "worker":
        _retire_requested = True


# Signals a web server may have handlers for in the parent (gunicorn: HUP, TERM, USR1, ...).
# Inherited Python handlers would run the server's code in our processes.
_RESET = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTTIN", "SIGTTOU", "SIGCHLD", "SIGALRM")


def _reset_signals() -> None:
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for name in _RESET:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    # Ctrl-C reaches the whole foreground process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def supervisor_main(pool: _core.Pool, options: Options) -> None:
    """Runs the supervisor until the parent shuts the pool down or dies. Never returns."""
    global role
    role = "supervisor"
    code = 0
    try:
        forksafe.refresh_output_streams()
        _reset_signals()
        supervisor = pool.become_supervisor()
        hooks.run(hooks.supervisor_start)
        del pool
        while (indices := supervisor.next_action()) is not None:
            for index in indices:
                pid = os.fork()
                if pid == 0:
                    worker_main(supervisor, index, options)
                supervisor.spawned(index, pid)
        supervisor.stop_workers(options.shutdown_grace)
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def worker_main(supervisor: _core.Supervisor, index: int, options: Options) -> None:
    """Runs one worker until shutdown or recycling. Never returns."""
    global role
    role = "worker"
    code = 0
    try:
        worker = supervisor.become_worker(index)
        del supervisor
        hooks.run(hooks.worker_start)
        worker.ready()
        _serve(worker, options)
        hooks.run(hooks.worker_exit)
    except BaseException:
        logger.exception("multicore worker %d (pid %d) failed", index, os.getpid())
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(worker: _core.Worker, options: Options) -> None:
    cache = wire.WorkerCache()
    pid = os.getpid()
    while (call := worker.next_call()) is not None:
        slot, ticket = call
        kind, body, fn = _execute(worker, cache, slot, ticket)
        try:
            worker.reply(slot, ticket, kind, body)
        except SharedMemoryError as exc:
            error = SerializationError(f"the result of {wire.describe(fn)} could not be sent back: {exc}")
            worker.reply(slot, ticket, *wire.encode_error(error, ""))
        # Nothing of this call may stay alive while we wait for the next one: a 100 MB result
        # would otherwise stay resident in an idle worker.
        del body, fn
        if _should_retire(worker, options, pid):
            worker.retire(10.0)
            return


def _execute(
    worker: _core.Worker, cache: wire.WorkerCache, slot: int, ticket: int
) -> tuple[int, bytes | list[Any], object]:
    fn = None
    try:
        tag, payload = worker.read_request(slot, ticket)
        fn, args, kwargs, fmt = cache.decode_call(tag, payload)
    except BaseException as exc:  # noqa: BLE001
        error = SerializationError(
            f"the worker could not rebuild the call ({type(exc).__name__}: {exc}). Functions and "
            "argument types must be importable in the worker: one defined in __main__ after the "
            "pool started does not exist there (define it before initialize() or the first Task())"
        )
        return (*wire.encode_error(error, traceback.format_exc()), fn)
    hooks.run(hooks.before_call)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt go back too
        return (*wire.encode_error(exc, traceback.format_exc()), fn)
    finally:
        hooks.run(hooks.after_call)
    return (*wire.encode_result(result, fmt, fn), fn)


def _should_retire(worker: _core.Worker, options: Options, pid: int) -> bool:
    if _retire_requested:
        return True
    if options.max_tasks_per_worker is not None and worker.tasks_done >= options.max_tasks_per_worker:
        return True
    return options.max_memory_per_worker is not None and _core.rss_bytes(pid) >= options.max_memory_per_worker
