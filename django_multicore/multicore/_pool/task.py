"""Task: a batch of calls run by the pool, collected in submission order by ``get()``, one
function mapped over many items by ``map()`` / ``imap()``, or calls awaited from an event loop
with ``arun()`` / ``aget()`` (woken by the pool through ``aio``)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Literal, cast

from multicore import _core, backends
from multicore import options as _options
from multicore._pool import aio, lifecycle, wire
from multicore.exceptions import (
    ConfigurationError,
    EventLoopMismatchError,
    MulticoreError,
    MulticoreTypeError,
    MulticoreWarning,
    PoolUnavailableError,
    TaskCompleteError,
    TimeoutExceededError,
    WorkerLostError,
)

# Results larger than this (bytes, all calls together) are unpickled in a thread by aget(), so a
# large result does not stall every other coroutine on the loop.
ASYNC_DECODE_IN_THREAD = 1 << 20

_LOAD_TTL = 1.0  # the kernel updates the load average every 5 s; re-reading it per Task is waste
_load_cache: tuple[float, float | None] = (float("-inf"), None)


def _load_average() -> float | None:
    global _load_cache
    now = time.monotonic()
    if now - _load_cache[0] > _LOAD_TTL:
        _load_cache = (now, _core.load_average())
    return _load_cache[1]


def machine_busy(max_load_average: float) -> bool:
    """True when the 1-minute load average exceeds ``max_load_average`` per usable CPU."""
    load = _load_average()
    return load is not None and load > max_load_average * lifecycle.recent_usable_cpus()


def _map_chunk(fn: Any, items: list[Any]) -> list[Any]:
    """In a worker: one chunk of a ``map()``."""
    return list(map(fn, items))


def auto_chunksize(count: int, workers: int) -> int:
    """About eight chunks per worker (``multiprocessing.Pool.map`` makes four). A call costs a few
    µs here, so more chunks cost little and buy a better balance, an earlier start and results
    decoded while the workers still run; and smaller chunks more often fit a slot's inline area
    instead of a segment. (20,000 tiny items on 2 workers: 1,250 a chunk ran 15-25% faster than
    2,500.)"""
    return max(1, -(-count // (8 * workers)))


def _check_chunksize(chunksize: Any) -> None:
    if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
        raise ConfigurationError(
            f"chunksize must be a positive integer (items per call) or None to choose it from the "
            f"number of items and workers, got {chunksize!r}"
        )


class _Call:
    __slots__ = ("slot", "ticket", "fn", "outcome")

    def __init__(self, slot: int, ticket: int, fn: Any) -> None:
        self.slot = slot
        self.ticket = ticket
        self.fn = fn  # for error messages only; its name is looked up when one is needed
        # "taken": map() decoded it already and dropped the payload.
        self.outcome: _core._Outcome | tuple[Literal["cancelled"]] | tuple[Literal["taken"]] | None = None

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__qualname__


class Task:
    """A batch of calls for the pool.

    ``Task()`` returns ``None`` instead of a Task when the machine is busy (the 1-minute load
    average is above ``max_load_average`` per CPU) or when called inside a multicore worker; the
    caller then does the work itself. A Task belongs to the thread that created it.
    ``backend`` ("local" or "dask") overrides the configured backend for this Task (docs/dask.md).
    """

    __slots__ = ("_calls", "_complete", "_harvested", "_loop", "_lost_seen", "_pool", "_timeout")
    _pool: lifecycle.PoolHandle
    _calls: list[_Call]
    _harvested: int
    _complete: bool
    _timeout: float | None
    _lost_seen: int
    _loop: asyncio.AbstractEventLoop | None

    def __new__(  # type: ignore[misc]
        cls, max_load_average: float | None = None, timeout: float | None = None, backend: str | None = None
    ) -> Task | None:
        if lifecycle.in_worker() or backends.in_remote_call():
            return None  # no nested pools
        options = _options.current()
        name = backends.resolve(backend, options)
        if name != backends.LOCAL:
            # The same API on another backend (docs/dask.md); the load guard is about this machine.
            return cast("Task | None", backends.task(name, timeout, options))
        limit = max_load_average if max_load_average is not None else options.max_load_average
        if limit is not None and machine_busy(limit):
            return None
        self = super().__new__(cls)
        self._pool = lifecycle.ensure_pool()
        # Worker deaths are counted from here: one that happens before get() starts waiting
        # (a call that crashes at once) must still be noticed at once, not in its turn.
        self._lost_seen = self._pool.core.lost_seq()
        self._calls = []
        self._harvested = 0
        self._complete = False
        self._timeout = timeout if timeout is not None else options.timeout
        self._loop = None  # set by the first arun()/aget()
        return self

    def run(
        self, fn: Any, *args: Any, serialization_format: str = "pickle", use_dill: bool = False, **kwargs: Any
    ) -> None:
        """Queues ``fn(*args, **kwargs)``; the result comes back from ``get()``.

        ``serialization_format`` ("pickle", "json" or "string") is how the result travels back;
        ``use_dill`` sends lambdas, closures and local functions with dill.
        """
        tag, payload = self._encode(fn, args, kwargs, serialization_format, use_dill)
        handle = self._pool.core.submit(tag, payload) or self._submit_when_full(tag, payload)
        self._calls.append(_Call(*handle, fn))

    def _encode(
        self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], serialization_format: str, use_dill: bool
    ) -> tuple[int, Any]:
        if self._complete:
            raise TaskCompleteError()
        if not callable(fn):
            raise MulticoreTypeError(f"Task.run() needs a callable first, got {type(fn).__name__}: {fn!r:.80}")
        if serialization_format not in wire.FORMATS:
            raise ConfigurationError(
                f"serialization_format must be one of {', '.join(map(repr, wire.FORMATS))}, "
                f"got {serialization_format!r}"
            )
        return wire.encode_call(fn, args, kwargs, serialization_format, use_dill)

    def _submit_chunk(self, fn: Any, chunk: list[Any]) -> _Call:
        tag, payload = wire.encode_call(_map_chunk, (fn, chunk), {}, "pickle", False)
        handle = self._pool.core.submit(tag, payload) or self._submit_when_full(tag, payload)
        return _Call(*handle, fn)

    def _start_map(self, method: str, fn: Any, chunksize: Any) -> None:
        if self._complete:
            raise TaskCompleteError()
        if self._calls:
            raise MulticoreError(
                f"Task.{method}() needs a Task of its own: this one already has {len(self._calls)} "
                "run() call(s). Collect them with get() first, or use a new Task()"
            )
        if not callable(fn):
            raise MulticoreTypeError(f"Task.{method}() needs a callable first, got {type(fn).__name__}: {fn!r:.80}")
        _check_chunksize(chunksize)

    def map(
        self, fn: Any, iterable: Iterable[Any], chunksize: int | None = None, timeout: float | None = None
    ) -> list[Any]:
        """Returns ``[fn(item) for item in iterable]``, computed by the workers, in order.

        Items travel in chunks of ``chunksize`` (default: about eight chunks per worker, see
        :func:`auto_chunksize`), one call each. Exceptions and timeouts work as in
        ``get()``: the first failed item's own exception, with the worker's traceback as
        ``__cause__``; :class:`TimeoutExceededError` after ``timeout`` seconds (default: the
        Task's) for the whole map; :class:`WorkerLostError` when a worker dies. Uses up the Task.
        """
        self._start_map("map", fn, chunksize)
        items = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)
        size = chunksize or auto_chunksize(len(items), self._pool.workers)
        submit, calls = self._submit_chunk, self._calls
        try:
            for start in range(0, len(items), size):
                calls.append(submit(fn, list(items[start : start + size])))
        except BaseException:
            # An item that cannot be pickled (SerializationError, naming it), or Ctrl-C: the
            # chunks already sent must not hold their slots forever.
            self._complete = True
            self._cancel(calls, kill=False)
            raise
        return self._collect_chunks(timeout)

    def _collect_chunks(self, timeout: float | None) -> list[Any]:
        """get() for map(): the same waits and errors, but each chunk is decoded as soon as it is
        there (while later chunks still run) and the first failure is raised once all finished."""
        self._complete = True
        timeout = timeout if timeout is not None else self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        results: list[Any] = []
        failure: list[BaseException] = []

        def collect(call: _Call) -> None:
            outcome, call.outcome = call.outcome, ("taken",)
            if not failure:
                try:
                    results.extend(wire.decode_result(*cast("tuple[str, int, _core._Payload]", outcome)[1:]))
                except BaseException as exc:  # noqa: BLE001 - fn's own exception, raised below
                    failure.append(exc)

        try:
            self._wait_all(deadline, timeout, collect)
        except BaseException as exc:
            self._cancel(self._calls, kill=not isinstance(exc, WorkerLostError))
            raise
        if failure:
            raise failure[0]
        return results

    def imap(
        self, fn: Any, iterable: Iterable[Any], chunksize: int | None = None, timeout: float | None = None
    ) -> Iterator[Any]:
        """Yields ``fn(item)`` for each item, in order, as the results arrive.

        Only a few chunks (four per worker) are in flight at once, so a long or endless
        iterable (a generator) is consumed as results are taken, and results are not held.
        ``chunksize`` defaults to about eight chunks per worker when ``iterable`` has a length,
        else to 1 (pass a larger one for many tiny items). An item's exception is raised when
        its turn comes; ``timeout`` (default: the Task's) bounds each wait for the next result.
        Leaving the loop early discards the calls still in flight. Uses up the Task.
        """
        self._start_map("imap", fn, chunksize)
        self._complete = True
        workers = self._pool.workers
        if chunksize is None:
            chunksize = auto_chunksize(len(iterable), workers) if isinstance(iterable, Sized) else 1
        timeout = timeout if timeout is not None else self._timeout
        return self._imap(fn, iter(iterable), chunksize, 4 * workers, timeout)

    def _imap(self, fn: Any, items: Iterator[Any], size: int, window: int, timeout: float | None) -> Iterator[Any]:
        pending: collections.deque[_Call] = collections.deque()
        exhausted, kill, done = False, False, 0
        try:
            while True:
                while not exhausted and len(pending) < window:
                    chunk = list(itertools.islice(items, size))
                    if chunk:
                        pending.append(self._submit_chunk(fn, chunk))
                    else:
                        exhausted = True
                if not pending:
                    return
                call = pending[0]
                try:
                    self._wait_one(call, pending, done, timeout)
                except (TimeoutExceededError, KeyboardInterrupt):
                    kill = True  # as get(): a stuck call is stopped, its worker replaced
                    raise
                pending.popleft()
                outcome, call.outcome = call.outcome, None
                done += 1
                yield from wire.decode_result(*cast("tuple[str, int, _core._Payload]", outcome)[1:])
        finally:
            # An exception of fn's own, a lost worker, or the caller leaving the loop: the calls
            # in flight finish and their results are dropped.
            self._cancel(pending, kill)

    def _wait_one(self, call: _Call, calls: Any, offset: int, timeout: float | None) -> None:
        """Waits for ``call`` (first of ``calls``, call number ``offset``) like get() waits."""
        core = self._pool.core
        deadline = None if timeout is None else time.monotonic() + timeout

        def check_lost() -> None:
            self._lost_seen = core.lost_seq()  # read before the scan, so no death falls between
            for index, other in enumerate(calls):
                if other.outcome is None:
                    other.outcome = core.take(other.slot, other.ticket)
                self._raise_if_lost(offset + index, other, offset + len(calls))

        self._wait_for(
            call,
            deadline,
            lambda: TimeoutExceededError(
                f"Task.imap() waited {timeout}s for the result of call {offset} ({call.name}); "
                "the calls in flight were stopped and their workers replaced"
            ),
            check_lost,
        )
        self._raise_if_lost(offset, call, offset + len(calls))

    def _wait_for(
        self,
        call: _Call,
        deadline: float | None,
        timed_out: Callable[[], TimeoutExceededError],
        check_lost: Callable[[], None],
    ) -> None:
        """Blocks until ``call`` has an outcome. Raises ``timed_out()`` at ``deadline``; a wake-up
        for some worker's death runs ``check_lost`` (which raises if the death was one of ours)."""
        core = self._pool.core
        while call.outcome is None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            call.outcome = core.wait(call.slot, call.ticket, remaining, self._lost_seen)
            if call.outcome is not None:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise timed_out()
            check_lost()

    def _submit_when_full(self, tag: int, payload: Any) -> tuple[int, int]:
        """``run()`` found every slot in use: make room, by collecting our own finished results
        (blocking on our oldest call) or waiting for another thread to free one, then retry."""
        _warn_if_on_loop("Task.run() found every slot in use and", "await task.arun(...)", stacklevel=4)
        core = self._pool.core
        while True:
            if self._harvested < len(self._calls):
                call = self._calls[self._harvested]
                if call.outcome is None:
                    call.outcome = core.wait(call.slot, call.ticket, 0.1)
                self._harvest_finished()
            else:
                core.wait_for_free_slot(0.1)
            handle = core.submit(tag, payload)
            if handle is not None:
                return handle

    def _harvest_finished(self) -> int:
        """Collects, in order, every result that is already there; returns how many slots that
        freed (results taken here, not earlier)."""
        core, calls = self._pool.core, self._calls
        freed = 0
        while self._harvested < len(calls):
            call = calls[self._harvested]
            if call.outcome is None:
                call.outcome = core.take(call.slot, call.ticket)
                if call.outcome is None:
                    return freed
                freed += 1
            self._harvested += 1
        return freed

    def get(self, timeout: float | None = None) -> list[Any]:
        """Returns every call's result in submission order.

        Raises the first failed call's own exception (after all calls finished), with the worker's
        traceback as ``__cause__``; :class:`TimeoutExceededError` when ``timeout`` (seconds,
        default: the Task's) passes, stopping the calls still running; :class:`WorkerLostError`
        as soon as a worker running one of the calls dies.
        """
        if self._complete:
            raise TaskCompleteError()
        self._complete = True
        timeout = timeout if timeout is not None else self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._harvest_finished()
            if self._harvested < len(self._calls):
                _warn_if_on_loop("Task.get()", "await task.aget()")
            self._wait_all(deadline, timeout)
        except BaseException as exc:
            # Timeouts and Ctrl-C stop the work; after a lost worker the rest may finish, unread.
            self._cancel(self._calls, kill=not isinstance(exc, WorkerLostError))
            raise
        results: list[Any] = []
        for call in self._calls:
            # The Task keeps its calls (len(), repr) but not their payloads: a large result must
            # be freed as soon as the caller drops it.
            outcome, call.outcome = call.outcome, None
            results.append(wire.decode_result(*cast("tuple[str, int, _core._Payload]", outcome)[1:]))
        return results

    def _wait_all(self, deadline: float | None, timeout: float | None, collect: Any = None) -> None:
        def timed_out() -> TimeoutExceededError:
            return TimeoutExceededError(
                f"Task.get() timed out after {timeout}s with {self._pending()} of "
                f"{len(self._calls)} calls unfinished; they were stopped and their workers replaced"
            )

        for index, call in enumerate(self._calls):
            # Woken because some worker died: _check_lost asks whether it was one of ours.
            self._wait_for(call, deadline, timed_out, self._check_lost)
            self._raise_if_lost(index, call, len(self._calls))
            if collect is not None:
                collect(call)
        for index, call in enumerate(self._calls):
            self._raise_if_lost(index, call, len(self._calls))

    def _pending(self) -> int:
        return sum(1 for c in self._calls if c.outcome is None)

    def _check_lost(self) -> None:
        core = self._pool.core
        self._lost_seen = core.lost_seq()  # read before the scan, so no death falls between
        for index, call in enumerate(self._calls):
            if call.outcome is None:
                call.outcome = core.take(call.slot, call.ticket)
                self._raise_if_lost(index, call, len(self._calls))

    def _raise_if_lost(self, index: int, call: _Call, total: int) -> None:
        if call.outcome is None or call.outcome[0] != "lost":
            return
        _, pid, status = cast("tuple[str, int, int]", call.outcome)
        if pid == 0:
            raise PoolUnavailableError(
                f"call {index} ({call.name}) could not run: the pool stopped respawning workers "
                f"after repeated start-up failures (last: {WorkerLostError.describe(status)})"
            )
        raise WorkerLostError(
            f"worker pid {pid} died with {WorkerLostError.describe(status)} while running call "
            f"{index} of {total} ({call.name}); the pool replaced it. A signal like "
            "SIGKILL often means the OOM killer; SIGSEGV a crash in native code",
            pid=pid,
            exitcode=status if status >= 0 else None,
            signal=-status if status < 0 else None,
        )

    def _cancel(self, calls: Iterable[_Call], kill: bool) -> None:
        core = self._pool.core
        open_calls = [call for call in calls if call.outcome is None]
        # Every queued call is withdrawn before any worker is killed: otherwise the replacement of
        # a killed worker (or a worker it freed) could still pick up a later call of this Task.
        for call in open_calls:
            if core.withdraw(call.slot, call.ticket):
                call.outcome = ("cancelled",)
        for call in open_calls:
            if call.outcome is None:
                core.cancel(call.slot, call.ticket, kill)
                call.outcome = ("cancelled",)

    def _cancel_pending(self, kill: bool) -> None:
        self._cancel(self._calls, kill)

    # -- the async face: the same calls, awaited from an event loop ---------------------------

    async def arun(
        self, fn: Any, *args: Any, serialization_format: str = "pickle", use_dill: bool = False, **kwargs: Any
    ) -> None:
        """As ``run()``, but when every slot is in use it awaits a free one instead of blocking
        the event loop. A cancel while it waits stops this Task's calls, as in ``aget()``."""
        loop = self._bind_loop()
        tag, payload = self._encode(fn, args, kwargs, serialization_format, use_dill)
        core = self._pool.core
        handle = core.submit(tag, payload)
        retry = False
        while handle is None:
            try:
                await self._make_room(loop, retry)
            except BaseException:
                self._complete = True
                self._cancel_pending(kill=True)
                raise
            handle = core.submit(tag, payload)
            retry = True
        self._calls.append(_Call(*handle, fn))

    async def _make_room(self, loop: asyncio.AbstractEventLoop, retry: bool) -> None:
        """Every slot is taken: await one of our own calls (its slot is freed when it is taken),
        or, holding none, wait in the loop's queue for a slot freed by other Tasks."""
        waiter = aio.waiter_for(loop, self._pool)
        waiter.slots_freed(self._harvest_finished())
        waiting = [call for call in self._calls[self._harvested :] if call.outcome is None]
        if not waiting:
            await waiter.wait_for_slot(retry)
            return
        gather = aio.Gather(loop, 1)
        try:
            for call in waiting:
                waiter.watch(call, gather)
                if gather.future.done():
                    break
            await gather.future
        finally:
            waiter.forget(waiting)
        waiter.slots_freed(self._harvest_finished())

    async def aget(self, timeout: float | None = None) -> list[Any]:
        """As ``get()``, awaited: every call's result in submission order, the first failed
        call's own exception with the worker's traceback as ``__cause__``,
        :class:`TimeoutExceededError` after ``timeout`` (stopping the calls still running),
        :class:`WorkerLostError` as soon as a worker running one of the calls dies.

        The event loop is woken by the pool, never polled. If the awaiting coroutine is cancelled
        (``asyncio.timeout``, ``wait_for``, a client disconnect), the Task's queued calls are
        withdrawn, the workers running its calls are killed and replaced, and ``CancelledError``
        propagates.
        """
        if self._complete:
            raise TaskCompleteError()
        loop = self._bind_loop()
        self._complete = True
        timeout = timeout if timeout is not None else self._timeout
        try:
            freed = self._harvest_finished()
            if self._harvested < len(self._calls):
                # One turn of the loop first (other coroutines run; no thread sleeps): a short call
                # is often done by then, which saves arming the doorbell and the wake-up from
                # epoll that costs more than the call on a VM. Never more than this one turn.
                await asyncio.sleep(0)
                freed += self._harvest_finished()
            if freed:
                aio.slots_freed(loop, self._pool, freed)
            if self._harvested < len(self._calls):
                await self._await_all(loop, timeout)
            for index, call in enumerate(self._calls):
                self._raise_if_lost(index, call, len(self._calls))
        except BaseException as exc:
            self._cancel_pending(kill=not isinstance(exc, WorkerLostError))
            raise
        outcomes = [cast("tuple[str, int, _core._Payload]", call.outcome) for call in self._calls]
        if sum(_size(o[2]) for o in outcomes) > ASYNC_DECODE_IN_THREAD:
            return await asyncio.to_thread(_decode_all, outcomes)
        return _decode_all(outcomes)

    async def _await_all(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        waiting = [call for call in self._calls if call.outcome is None]
        waiter = aio.waiter_for(loop, self._pool)
        gather = aio.Gather(loop, len(waiting))
        timer = None if timeout is None else loop.call_later(timeout, gather.time_out)
        try:
            for call in waiting:
                waiter.watch(call, gather)
                if call.outcome is not None and call.outcome[0] == "lost":
                    break
            while True:
                await gather.future
                for index, call in enumerate(self._calls):
                    self._raise_if_lost(index, call, len(self._calls))
                if gather.need <= 0:
                    return
                if gather.timed_out:
                    raise TimeoutExceededError(
                        f"Task.aget() timed out after {timeout}s with {self._pending()} of "
                        f"{len(self._calls)} calls unfinished; they were stopped and their workers replaced"
                    )
                gather.future = loop.create_future()  # woken for a call that was not ours to raise
        finally:
            if timer is not None:
                timer.cancel()
            waiter.forget(waiting)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise EventLoopMismatchError(
                "this Task was started on another event loop; await a Task only on the loop that "
                "ran its first arun()/aget() (create one Task per loop)"
            )
        return loop

    async def __aenter__(self) -> Task:
        self._bind_loop()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving the block ends the Task: calls not collected by ``aget()`` (after an
        exception, a cancel, or none at all) are withdrawn or stopped, their workers replaced."""
        if not self._complete:
            self._complete = True
            self._cancel_pending(kill=True)

    def __len__(self) -> int:
        return len(self._calls)

    def __repr__(self) -> str:
        state = "collected" if self._complete else "open"
        return f"<multicore.Task {state}, {len(self._calls)} calls>"


def _size(payload: Any) -> int:
    return len(payload) if isinstance(payload, bytes) else sum(map(len, payload))


def _decode_all(outcomes: list[tuple[str, int, _core._Payload]]) -> list[Any]:
    return [wire.decode_result(*outcome[1:]) for outcome in outcomes]


def _warn_if_on_loop(what: str, instead: str, stacklevel: int = 3) -> None:
    """A blocking wait on an event loop's thread stalls every coroutine of that loop."""
    if aio.running_loop() is not None:
        warnings.warn(
            f"{what} blocks this thread, which runs an asyncio event loop: every other coroutine "
            f"on it stalls until the calls finish. Use `{instead}` in async code.",
            MulticoreWarning,
            stacklevel=stacklevel,
        )
