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

Wake-ups are handed out in rounds of at most ``RELEASE_BATCH`` per loop callback: a ring that
finds hundreds of finished calls (or frees hundreds of slots) resumes that many coroutines, and
resuming them all in one callback would stall the loop (every coroutine's own decode and return
runs in the next loop iteration). Between rounds the loop runs its timers and I/O.

A coroutine whose ``arun()`` finds every slot in use and holds no call of its own waits in this
loop's FIFO of slot waiters; every slot freed by a result this loop takes wakes the next one. A
slot freed elsewhere (another thread's Task) rings no loop, so while anyone waits one timer
re-checks for the head of the queue every ``SLOT_RECHECK`` seconds.

A loop's readers go with it: they are removed when the pool they watch is replaced or dies, and
the duplicated descriptors are closed when the loop is closed (checked whenever a loop registers)
or garbage collected.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from multicore.exceptions import MulticoreError, PoolUnavailableError

if TYPE_CHECKING:  # ("done", kind, payload) | ("lost", pid, status), as Pool.take returns
    from multicore._core import _Outcome as Outcome

# Coroutines resumed per loop callback (results arrived, slots freed). 64 keeps one round well
# under a millisecond on a slow machine; more rounds cost one epoll(0) each.
RELEASE_BATCH = 64
# How often the head slot waiter re-checks for a slot freed by another thread (seconds).
SLOT_RECHECK = 0.002


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
        # Calls that finished, their Gathers not told yet; futures of arun()s waiting for a slot,
        # in arrival order; how many slots this loop freed for them. All on the loop's thread.
        self.arrived: collections.deque[tuple[Gather, Outcome]] = collections.deque()
        self.slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.freed = 0
        self._release_scheduled = False
        self._recheck: asyncio.TimerHandle | None = None
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
                    self.slots_freed(1)
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
        """Takes every finished call (freeing its slot at once, so the workers go on), and hands
        the news to the Gathers in rounds (``release``)."""
        take = self.core.take
        found = 0
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
                self.arrived.append((gather, outcome))
                found += 1
        if found:
            self.freed += found
            self.release()

    def slots_freed(self, count: int) -> None:
        """``count`` slots were freed by results this loop took: as many slot waiters may go on."""
        if count and self.slot_waiters:
            self.freed += count
            self.release()

    def release(self) -> None:
        """One round: tells up to RELEASE_BATCH Gathers and wakes up to RELEASE_BATCH slot
        waiters; schedules the next round if more are left (the loop runs its timers between)."""
        self._release_scheduled = False
        arrived = self.arrived
        for _ in range(min(len(arrived), RELEASE_BATCH)):
            gather, outcome = arrived.popleft()
            gather.arrived(outcome)
        woken, waiters = 0, self.slot_waiters
        while waiters and self.freed > 0 and woken < RELEASE_BATCH:
            future = waiters.popleft()
            if not future.done():  # cancelled while it waited
                future.set_result(None)
                self.freed -= 1
                woken += 1
        if not waiters:
            self.freed = 0  # nobody to hand them to; later waiters try submit() first anyway
        if (arrived or (waiters and self.freed > 0)) and not self._release_scheduled:
            self._release_scheduled = True
            self.loop.call_soon(self.release)

    async def wait_for_slot(self, retry: bool = False) -> None:
        """Waits, in arrival order, until a slot may be free (``retry``: this coroutine was woken
        but lost the slot to another thread, so it goes first again)."""
        global _slot_waiting
        future: asyncio.Future[None] = self.loop.create_future()
        if retry:
            self.slot_waiters.appendleft(future)
        else:
            self.slot_waiters.append(future)
        if self._recheck is None:
            self._recheck = self.loop.call_later(SLOT_RECHECK, self._recheck_slots)
        # Not locked: a count gone wrong by a lost update between threads costs a needless lookup,
        # or a wake-up left to the 2 ms re-check; never a lost waiter.
        _slot_waiting += 1
        try:
            await future
        finally:
            _slot_waiting -= 1

    def _recheck_slots(self) -> None:
        """The timer for slots freed elsewhere: wakes the head waiter to try again."""
        self._recheck = None
        waiters = self.slot_waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        if waiters:
            waiters.popleft().set_result(None)
            if waiters:
                self._recheck = self.loop.call_later(SLOT_RECHECK, self._recheck_slots)

    def pool_died(self) -> None:
        """The supervisor exited: every call still waited on fails now, unless it finished."""
        _unregister(self)
        self.close()
        self.scan()
        while self.arrived:  # tell them now: there are no more rounds for this pool
            gather, outcome = self.arrived.popleft()
            gather.arrived(outcome)
        gone = PoolUnavailableError("the pool's supervisor process exited; the pool is gone")
        for _, gather in list(self.pending.values()):
            gather.fail(gone)
        self.pending.clear()
        for future in self.slot_waiters:
            if not future.done():
                future.set_exception(gone)
        self.slot_waiters.clear()
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None

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
# arun()s waiting for a slot, in every loop: aget()'s fast path looks no waiter up while it is 0.
_slot_waiting = 0
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


def slots_freed(loop: asyncio.AbstractEventLoop, pool: Any, count: int) -> None:
    """``count`` slots of ``pool`` were freed on ``loop``: wakes its slot waiters, if it has any."""
    if not _slot_waiting:
        return
    waiter = _waiters.get(loop)
    if waiter is not None and waiter.pool is pool:
        waiter.slots_freed(count)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any (no exception, no syscall)."""
    return asyncio._get_running_loop()
