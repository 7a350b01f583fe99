"""Type stubs for the private extension module ``multicore._core`` (rust/binding).

Written by hand, as pydantic-core does: this is the whole Rust/Python boundary, checked against
the compiled module by ``python -m mypy.stubtest multicore._core``. Everything here is private; the
public API is in ``multicore``.

Errors: every engine error arrives as a ``multicore.exceptions.MulticoreError`` subclass:
``ConfigurationError`` (an option out of range), ``MulticoreOSError`` (a system call failed; ``errno``
set), ``SharedMemoryError``, ``ProtocolError`` (untrusted shared data, a stale handle),
``PoolUnavailableError``; a payload of the wrong type raises ``SerializationError``.
"""

from collections.abc import Sequence
from typing import Final, Literal, final

from typing_extensions import Buffer

__all__ = [
    "__version__",
    "MIN_WORKERS",
    "MAX_WORKERS",
    "MIN_SLOTS",
    "MAX_SLOTS",
    "MIN_INLINE_SIZE",
    "MAX_INLINE_SIZE",
    "MAX_SPIN_US",
    "Pool",
    "Supervisor",
    "Worker",
    "usable_cpus",
    "load_average",
    "rss_bytes",
]

__version__: Final[str]

# The engine's limits of the pool options (inclusive). Python's option checks derive from these,
# so any value they accept the engine accepts too.
MIN_WORKERS: Final[int]
"""Fewest worker processes (1)."""
MAX_WORKERS: Final[int]
"""Most worker processes (1024)."""
MIN_SLOTS: Final[int]
"""Fewest slots (calls in flight): one running, one being submitted (2)."""
MAX_SLOTS: Final[int]
"""Most slots (65536)."""
MIN_INLINE_SIZE: Final[int]
"""Smallest inline payload area per slot, bytes (64)."""
MAX_INLINE_SIZE: Final[int]
"""Largest inline payload area per slot, bytes (1 MiB)."""
MAX_SPIN_US: Final[int]
"""Largest worker_spin_us / parent_spin_us, microseconds (2**32 - 1)."""

_Payload = bytes | list[bytes]
"""A received payload: one ``bytes``, or the parts of a multi-part payload (a pickle, then the
large buffers that travelled beside it)."""

_Outgoing = bytes | Sequence[Buffer]
"""What may be sent: one ``bytes``, or a sequence of contiguous byte buffers (sent framed)."""

_Outcome = tuple[Literal["done"], int, _Payload] | tuple[Literal["lost"], int, int]
"""("done", kind, payload) or ("lost", pid, status); status < 0 is minus a signal number."""

@final
class Pool:
    """The parent's handle on a pool's shared control region."""

    def __new__(
        cls,
        *,
        workers: int,
        slots: int,
        inline_size: int,
        worker_spin_us: int,
        parent_spin_us: int,
        max_payload: int | None,
        segment_keep_bytes: int,
    ) -> Pool:
        """Creates the shared control region. Every option is required: the defaults live in
        ``multicore.options.Options`` alone. Out-of-range values raise ConfigurationError."""
    def become_supervisor(self) -> Supervisor:
        """In the freshly forked supervisor: keep only the supervisor's descriptors."""
    def supervisor_started(self, pid: int) -> None:
        """In the parent after forking the supervisor."""
    def forget_in_child(self) -> None:
        """In a child forked by the user: drop inherited descriptors without touching the pool."""
    def alive(self) -> bool:
        """Whether the supervisor process still runs."""
    def submit(self, tag: int, payload: _Outgoing) -> tuple[int, int] | None:
        """Publishes a call: (slot, ticket), or None when every slot is in use."""
    def take(self, slot: int, ticket: int) -> _Outcome | None:
        """The call's outcome if finished (frees its slot), else None."""
    def wait(
        self, slot: int, ticket: int, timeout: float | None = None, lost_seen: int | None = None
    ) -> _Outcome | None:
        """Like take(), blocking with the GIL released; None on timeout, or once any worker died
        since ``lost_seen`` (a lost_seq() reading, default now)."""
    def lost_seq(self) -> int: ...
    def arm_async(self, slot: int, ticket: int) -> bool:
        """Flags a call as awaited by an event loop: the async doorbell rings when it finishes
        (or its worker dies). True when it already finished: take it now, no ring will come."""
    @property
    def async_bell(self) -> int:
        """The async doorbell: an eventfd (EFD_NONBLOCK) inherited by every pool process; -1 once
        the pool was shut down. Watch and drain a duplicate (os.dup): shutdown closes this one."""
    @property
    def supervisor_pidfd(self) -> int:
        """The supervisor's pidfd, readable once it exited; -1 when there is none."""
    def withdraw(self, slot: int, ticket: int) -> bool:
        """Takes back a call no worker has claimed yet; False when it is no longer queued."""
    def wait_for_free_slot(self, timeout: float) -> None: ...
    def cancel(self, slot: int, ticket: int, kill: bool = False) -> int | None:
        """Withdraws or abandons a call; returns the pid of the worker that was running it."""
    def shutdown(self, grace: float) -> None:
        """Stops workers (SIGKILL after `grace` seconds) and the supervisor; idempotent."""
    def info(self) -> dict[str, object]: ...

@final
class Supervisor:
    """The supervisor process's handle; used from its single thread only."""

    def next_action(self) -> list[int] | None:
        """Worker indices to fork, or None when the supervisor should stop."""
    def spawned(self, index: int, pid: int) -> None: ...
    def become_worker(self, index: int) -> Worker:
        """In a freshly forked worker: arm the parent-death signal and bind to `index`."""
    def stop_workers(self, grace: float) -> None: ...

@final
class Worker:
    """A worker process's handle."""

    @property
    def tasks_done(self) -> int: ...
    def ready(self) -> None: ...
    def next_call(self) -> tuple[int, int] | None:
        """Blocks for the next call: (slot, ticket); None when the pool stops."""
    def read_request(self, slot: int, ticket: int) -> tuple[int, _Payload]: ...
    def reply(self, slot: int, ticket: int, tag: int, payload: _Outgoing) -> bool:
        """Publishes a response; False when the parent had abandoned the call."""
    def retire(self, max_wait: float) -> None:
        """Before a planned exit: wait until the parent has read our large results."""

def usable_cpus() -> int:
    """min(host CPUs, affinity mask, cgroup CPU quota)."""

def load_average() -> float | None:
    """The machine's 1-minute load average."""

def rss_bytes(pid: int) -> int:
    """Resident memory of a process, bytes (0 if unknown)."""
