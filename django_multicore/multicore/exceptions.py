"""Every error multicore raises on its own account derives from :class:`MulticoreError`.

An exception raised *by your function* in a worker is not wrapped: ``get()`` raises it with its
own type and arguments, and the worker's traceback attached as ``__cause__`` (a
:class:`RemoteTraceback`), as ``concurrent.futures`` does. Only when it cannot be rebuilt in the
parent does it arrive as :class:`RemoteError`.
"""

from __future__ import annotations

import signal as _signal
from typing import Any

__all__ = [
    "MulticoreError",
    "ConfigurationError",
    "MulticoreOSError",
    "MulticoreTypeError",
    "TaskCompleteError",
    "TimeoutExceededError",
    "WorkerLostError",
    "SerializationError",
    "SharedMemoryError",
    "RemoteError",
    "RemoteTraceback",
    "PoolUnavailableError",
    "ProtocolError",
    "EventLoopMismatchError",
    "MulticoreWarning",
    "NoAvailableInputBufferError",
    "InputBufferTooSmallError",
]


class MulticoreError(Exception):
    """Base class of all multicore errors."""


class ConfigurationError(MulticoreError, ValueError):
    """An option or setting is out of range or of the wrong type; the message names it and the fix."""


class MulticoreOSError(MulticoreError, OSError):
    """A system call the pool needs failed (memfd, fork, pidfd...); ``errno`` says why."""


class MulticoreTypeError(MulticoreError, TypeError):
    """An argument of the wrong type (``Task.run()`` given something not callable), or an
    unknown keyword (``initialize(max_load=...)``)."""


class TaskCompleteError(MulticoreError):
    """``run()`` or ``get()`` was called on a Task whose results were already collected."""

    def __init__(
        self, message: str = "this Task's results were already collected with get(); create a new Task() for more work"
    ) -> None:
        super().__init__(message)


class TimeoutExceededError(MulticoreError, TimeoutError):
    """``get()`` waited longer than its timeout; unfinished calls were stopped."""


class WorkerLostError(MulticoreError):
    """The worker running a call died (SIGKILL, OOM killer, segfault, ``os._exit``).

    The pool has already replaced the worker; a new Task works normally.
    """

    def __init__(
        self, message: str, *, pid: int | None = None, exitcode: int | None = None, signal: int | None = None
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # keep keyword-only attributes through pickling
        return (_rebuild_worker_lost, (self.args[0], self.pid, self.exitcode, self.signal))

    @staticmethod
    def describe(status: int) -> str:
        """Human text for a packed exit status (negative = signal number)."""
        if status < 0:
            try:
                name = _signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            return f"{name} ({status})"
        return f"exit code {status}"


def _rebuild_worker_lost(message: str, pid: int | None, exitcode: int | None, signal: int | None) -> WorkerLostError:
    return WorkerLostError(message, pid=pid, exitcode=exitcode, signal=signal)


class SerializationError(MulticoreError, TypeError):
    """A function, argument, result or exception could not be serialized or rebuilt.

    Raised by ``run()`` (nothing is sent) or by ``get()`` (for results), naming the object.
    """


class SharedMemoryError(MulticoreError, MemoryError):
    """Shared memory for a payload could not be had (memory limit or the pool's max payload)."""


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of a re-raised exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class RemoteError(MulticoreError):
    """A call raised an exception that could not be re-created in the parent."""

    def __init__(self, type_name: str, message: str, traceback: str, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"{type_name}: {message} [could not be re-created in the parent{why}]")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (RemoteError, (self.type_name, self.message, self.traceback))


class PoolUnavailableError(MulticoreError):
    """The pool cannot take work: it is shut down, broken by a crash loop, or its supervisor died."""


class ProtocolError(MulticoreError):
    """The shared-memory protocol met data it cannot trust (a bug or memory corruption)."""


class NoAvailableInputBufferError(MulticoreError):
    """Kept for code written for the original django-multicore
    (https://github.com/praekelt/django-multicore), where ``run()`` raised it when
    every input buffer was taken. Never raised: ``run()`` waits for a free slot instead."""


class InputBufferTooSmallError(MulticoreError):
    """Kept for code written for the original django-multicore, where ``run()`` raised it for
    arguments larger than its fixed input buffer. Never raised: payloads of any size travel
    (up to the ``max_payload`` option, which raises :class:`SharedMemoryError`)."""


class EventLoopMismatchError(MulticoreError, RuntimeError):
    """A Task was awaited from an event loop other than the one it started on (its calls are
    watched by that loop, which would never wake this one)."""


class MulticoreWarning(RuntimeWarning):
    """Work that runs but may not do what you expect (e.g. workers reading the database inside
    the caller's ``atomic()`` block cannot see its uncommitted writes)."""
