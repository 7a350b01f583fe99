"""Waking asyncio event loops from the pool, without a thread per waiting call and without polling.

Workers ring the pool's *async doorbell*, an eventfd every pool process inherits, when they finish
a call an event loop waits on (``_core.Pool.arm_async`` flags it), and the supervisor rings it
after any worker death. Each event loop that waits watches a duplicate of that eventfd with
``loop.add_reader`` and, beside it, the supervisor's pidfd, so a dead pool fails every await at
once. A ring resolves the calls that finished; the scan runs on the loop's own thread.

Several loops in one process (a loop per thread, a loop per test) share one eventfd counter:
whichever loop reads it passes the news on to the others that wait, through
``call_soon_threadsafe``. A loop that cannot watch a descriptor (``add_reader`` raises
``NotImplementedError``) waits in the default executor instead, a thread per waiting call.

A loop's readers go with it: they are removed when the pool they watch is replaced or dies, and
the duplicated descriptors are closed when the loop is closed (checked whenever a loop registers)
or garbage collected.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from multicore.exceptions import MulticoreError, PoolUnavailableError

if TYPE_CHECKING:  # ("done", kind, payload) | ("lost", pid, status), as Pool.take returns
    from multicore._core import _Outcome as Outcome


class Gather:
    """What one await waits for: ``need`` more calls of a Task, or the first lost one."""

    __slots__ = ("future", "need", "timed_out")

    def __init__(self, loop: asyncio.AbstractEventLoop, need: int) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.need = need
        self.timed_out = False

    def arrived(self, outcome: Outcome) -> None:
        self.need -= 1
        if (self.need <= 0 or outcome[0] == "lost") and not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def time_out(self) -> None:
        self.timed_out = True
        if not self.future.done():
            self.future.set_result(None)


class LoopWaiter:
    """The calls one event loop waits on in one pool, and the loop's readers for that pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Any) -> None:
        self.loop = loop
        self.pool = pool
        self.core = pool.core
        # (slot, ticket) -> (call, gather); touched only on the loop's thread.
        self.pending: dict[tuple[int, int], tuple[Any, Gather]] = {}
        self.readers = False
        self.fds: tuple[int, ...] = ()
        pidfd, bell = self.core.supervisor_pidfd, self.core.async_bell
        if pidfd < 0 or bell < 0:
            raise PoolUnavailableError("the pool has no supervisor process")
        bell, pidfd = os.dup(bell), os.dup(pidfd)
        self.fds = (bell, pidfd)
        # Closes the duplicates when the loop is collected; close() runs it earlier.
        self._finalizer = weakref.finalize(loop, _close_fds, self.fds)
        try:
            loop.add_reader(bell, self.drain)
            loop.add_reader(pidfd, self.pool_died)
            self.readers = True
        except NotImplementedError:
            self._finalizer()  # no readers: the fallback waits in threads

    def close(self) -> None:
        """Removes the readers (on the loop's thread, unless the loop is closed) and closes the fds."""
        if self.readers and not self.loop.is_closed():
            for fd in self.fds:
                self.loop.remove_reader(fd)
        self.readers = False
        self._finalizer()

    def watch(self, call: Any, gather: Gather) -> None:
        """Resolves ``call.outcome`` into ``gather`` once the call finished."""
        key = (call.slot, call.ticket)
        if not self.readers:
            self._watch_in_thread(call, gather)
            return
        # Registered before arming, so a ring read by another loop finds us waiting.
        self.pending[key] = (call, gather)
        try:
            if self.core.arm_async(call.slot, call.ticket):
                outcome = self.core.take(call.slot, call.ticket)
                if outcome is not None:
                    del self.pending[key]
                    call.outcome = outcome
                    gather.arrived(outcome)
        except BaseException:
            self.pending.pop(key, None)
            raise

    def forget(self, calls: list[Any]) -> None:
        for call in calls:
            self.pending.pop((call.slot, call.ticket), None)

    def drain(self) -> None:
        """The doorbell rang: reset it, look at our calls, and tell the other waiting loops."""
        try:
            os.read(self.fds[0], 8)  # resets the counter; our own duplicate, never closed under us
        except BlockingIOError:
            pass  # another loop read it first
        self.scan()
        for other in _others(self):
            try:
                other.loop.call_soon_threadsafe(other.scan)
            except RuntimeError:  # closed meanwhile; its waits are gone with it
                pass

    def scan(self) -> None:
        take = self.core.take
        for key, (call, gather) in list(self.pending.items()):
            try:
                outcome = take(*key)
            except MulticoreError as exc:
                del self.pending[key]
                gather.fail(exc)
                continue
            if outcome is not None:
                del self.pending[key]
                call.outcome = outcome
                gather.arrived(outcome)

    def pool_died(self) -> None:
        """The supervisor exited: every call still waited on fails now, unless it finished."""
        _unregister(self)
        self.close()
        self.scan()
        for _, gather in list(self.pending.values()):
            gather.fail(PoolUnavailableError("the pool's supervisor process exited; the pool is gone"))
        self.pending.clear()

    def _watch_in_thread(self, call: Any, gather: Gather) -> None:
        """The fallback for loops that cannot watch a descriptor: a thread waits for the call."""
        core = self.core

        def wait() -> Outcome:
            while True:
                outcome: Outcome | None = core.wait(call.slot, call.ticket, 1.0)
                if outcome is not None:
                    return outcome

        def done(future: asyncio.Future[Outcome]) -> None:
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                gather.fail(exc)
            elif call.outcome is None:
                call.outcome = future.result()
                gather.arrived(call.outcome)

        self.loop.run_in_executor(None, wait).add_done_callback(done)


_lock = threading.Lock()
_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaiter] = weakref.WeakKeyDictionary()


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _others(me: LoopWaiter) -> list[LoopWaiter]:
    with _lock:
        return [w for w in _waiters.values() if w is not me and w.pending and w.pool is me.pool]


def _unregister(waiter: LoopWaiter) -> None:
    with _lock:
        if _waiters.get(waiter.loop) is waiter:
            del _waiters[waiter.loop]


def waiter_for(loop: asyncio.AbstractEventLoop, pool: Any) -> LoopWaiter:
    """This loop's waiter for ``pool``, registering its readers on first use (call on the loop)."""
    waiter = _waiters.get(loop)
    if waiter is not None and waiter.pool is pool:
        return waiter
    with _lock:
        stale = [w for w in _waiters.values() if w.loop.is_closed()]
        for w in stale:
            del _waiters[w.loop]
        old = _waiters.pop(loop, None)
    for w in stale:
        w.close()
    if old is not None:
        old.close()  # the pool it watched was replaced
    waiter = LoopWaiter(loop, pool)
    with _lock:
        _waiters[loop] = waiter
    return waiter


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (no exception, no syscall)."""
    return asyncio._get_running_loop()
