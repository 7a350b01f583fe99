"""Type stubs for the private extension module ``multicore._core`` (rust/binding).

Written by hand, as pydantic-core does: this is the whole Rust/Python boundary. Everything here
is private; the public API is in ``multicore``.
"""

from collections.abc import Sequence
from typing import Literal

from typing_extensions import Buffer

__version__: str
LAYOUT_VERSION: int

Payload = bytes | list[bytes]
"""A received payload: one ``bytes``, or the parts of a multi-part payload (a pickle, then the
large buffers that travelled beside it)."""

Outgoing = bytes | Sequence[Buffer]
"""What may be sent: one ``bytes``, or a sequence of contiguous byte buffers (sent framed)."""

Outcome = tuple[Literal["done"], int, Payload] | tuple[Literal["lost"], int, int]
"""("done", kind, payload) or ("lost", pid, status); status < 0 is minus a signal number."""

class Pool:
    """The parent's handle on a pool's shared control region."""

    def __new__(
        cls,
        workers: int,
        slots: int = 256,
        inline_size: int = 3968,
        worker_spin_us: int = 200,
        parent_spin_us: int = 50,
        max_payload: int | None = None,
    ) -> Pool: ...
    @property
    def owner_pid(self) -> int: ...
    def become_supervisor(self) -> Supervisor:
        """In the freshly forked supervisor: keep only the supervisor's descriptors."""
    def supervisor_started(self, pid: int) -> None:
        """In the parent after forking the supervisor."""
    def forget_in_child(self) -> None:
        """In a child forked by the user: drop inherited descriptors without touching the pool."""
    def alive(self) -> bool:
        """Whether the supervisor process still runs."""
    def submit(self, tag: int, payload: Outgoing) -> tuple[int, int] | None:
        """Publishes a call: (slot, ticket), or None when every slot is in use."""
    def take(self, slot: int, ticket: int) -> Outcome | None:
        """The call's outcome if finished (frees its slot), else None."""
    def wait(
        self, slot: int, ticket: int, timeout: float | None = None, lost_seen: int | None = None
    ) -> Outcome | None:
        """Like take(), blocking with the GIL released; None on timeout, or once any worker died
        since ``lost_seen`` (a lost_seq() reading, default now)."""
    def lost_seq(self) -> int: ...
    def wait_for_free_slot(self, timeout: float) -> None: ...
    def cancel(self, slot: int, ticket: int, kill: bool = False) -> int | None:
        """Withdraws or abandons a call; returns the pid of the worker that was running it."""
    def shutdown(self, grace: float) -> None:
        """Stops workers (SIGKILL after `grace` seconds) and the supervisor; idempotent."""
    def info(self) -> dict[str, object]: ...

class Supervisor:
    """The supervisor process's handle; used from its single thread only."""

    def next_action(self) -> list[int] | None:
        """Worker indices to fork, or None when the supervisor should stop."""
    def spawned(self, index: int, pid: int) -> None: ...
    def become_worker(self, index: int) -> Worker:
        """In a freshly forked worker: arm the parent-death signal and bind to `index`."""
    def stop_workers(self, grace: float) -> None: ...

class Worker:
    """A worker process's handle."""

    @property
    def index(self) -> int: ...
    @property
    def tasks_done(self) -> int: ...
    def ready(self) -> None: ...
    def next_call(self) -> tuple[int, int] | None:
        """Blocks for the next call: (slot, ticket); None when the pool stops."""
    def read_request(self, slot: int, ticket: int) -> tuple[int, Payload]: ...
    def reply(self, slot: int, ticket: int, tag: int, payload: Outgoing) -> bool:
        """Publishes a response; False when the parent had abandoned the call."""
    def retire(self, max_wait: float) -> None:
        """Before a planned exit: wait until the parent has read our large results."""

def usable_cpus() -> int:
    """min(host CPUs, affinity mask, cgroup CPU quota)."""

def load_average() -> float | None:
    """The machine's 1-minute load average."""

def rss_bytes(pid: int) -> int:
    """Resident memory of a process, bytes (0 if unknown)."""
