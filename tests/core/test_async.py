"""The async face of Task: arun()/aget()/async with, woken by the pool's eventfd, with real
cancellation (queued calls withdrawn, running workers killed and replaced)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

import multicore
from multicore import Task
from multicore._pool import aio, lifecycle
from multicore.exceptions import (
    EventLoopMismatchError,
    MulticoreWarning,
    PoolUnavailableError,
    RemoteTraceback,
    SerializationError,
    TaskCompleteError,
    TimeoutExceededError,
    WorkerLostError,
)
from tests.core import helpers
from tests.support import pid_alive, run_python, wait_until, worker_pids

pytestmark = pytest.mark.timeout(60)


class Heartbeat:
    """A coroutine ticking every millisecond: it only ticks while the loop is free."""

    def __init__(self) -> None:
        self.ticks = 0
        self.worst_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            self.worst_gap = max(self.worst_gap, now - last)
            last = now
            self.ticks += 1

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def busy_pids() -> list[int]:
    return [w["pid"] for w in multicore.pool_info()["workers"] if w["state"] == "busy" and w["pid"]]


@pytest.mark.asyncio
async def test_results_come_back_in_submission_order_with_kwargs(pool):
    task = Task()
    for i, delay in enumerate([0.05, 0.0, 0.03, 0.0]):
        await task.arun(helpers.sleep_then, delay, i)
    await task.arun(helpers.add, 1, 2, c=3)
    assert await task.aget() == [0, 1, 2, 3, 6]
    assert len(task) == 5


@pytest.mark.asyncio
async def test_a_calls_own_exception_arrives_with_the_remote_traceback(pool):
    task = Task()
    await task.arun(helpers.identity, 1)
    await task.arun(helpers.raise_value_error, "boom")
    with pytest.raises(ValueError) as info:
        await task.aget()
    assert info.value.args == ("boom", 42)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "raise_value_error" in str(info.value.__cause__)


@pytest.mark.asyncio
async def test_the_loop_keeps_running_while_calls_run(pool):
    task = Task()
    with Heartbeat() as beat:
        await task.arun(helpers.sleep_then, 0.3, "a")
        await task.arun(helpers.sleep_then, 0.3, "b")
        assert await task.aget() == ["a", "b"]
    # A blocked loop would not tick at all during the 300 ms; a free one ticks about every ms.
    assert beat.ticks > 30, beat.ticks


@pytest.mark.asyncio
async def test_many_concurrent_awaits_use_no_thread(pool):
    before = threading.active_count()

    async def one(i: int) -> int:
        task = Task()
        await task.arun(helpers.identity, i)
        (result,) = await task.aget()
        return result

    assert await asyncio.gather(*(one(i) for i in range(300))) == list(range(300))
    assert threading.active_count() == before
    assert aio._waiters[asyncio.get_running_loop()].readers, "woken through add_reader, not the fallback"


@pytest.mark.asyncio
async def test_all_finished_is_collected_without_waiting(pool):
    task = Task()
    await task.arun(helpers.identity, 7)
    assert wait_until(lambda: multicore.pool_info()["completed"] >= 1)
    loop = asyncio.get_running_loop()
    aio._waiters.pop(loop, None)
    assert await task.aget() == [7]
    assert loop not in aio._waiters, "nothing was registered: the fast path waits for nothing"


@pytest.mark.asyncio
async def test_a_cancelled_await_kills_the_running_worker_and_leaves_no_stale_result(pool, tmp_path):
    task = Task()
    await task.arun(helpers.sleep_then, 30, "stale")
    assert wait_until(lambda: len(busy_pids()) == 1)
    (victim,) = busy_pids()
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(task.aget(), 0.2)
    assert time.monotonic() - started < 5
    assert wait_until(lambda: not pid_alive(victim)), "the running call's worker was killed"
    assert wait_until(lambda: len(worker_pids()) == 2 and victim not in worker_pids()), "and replaced"
    with pytest.raises(TaskCompleteError):
        await task.aget()
    after = Task()
    await after.arun(helpers.identity, "fresh")
    assert await after.aget() == ["fresh"]


@pytest.mark.asyncio
async def test_a_cancel_withdraws_queued_calls_before_they_start(pool, tmp_path):
    marker = tmp_path / "queued-call-ran"
    task = Task()
    await task.arun(helpers.sleep_then, 30, 0)
    await task.arun(helpers.sleep_then, 30, 1)
    await task.arun(helpers.touch, str(marker))  # queued behind two busy workers
    assert wait_until(lambda: len(busy_pids()) == 2)
    try:
        async with asyncio.timeout(0.2):
            await task.aget()
    except TimeoutError:
        pass
    else:
        raise AssertionError("aget() returned under a 0.2 s timeout")
    assert wait_until(lambda: len(worker_pids()) == 2 and not busy_pids())
    follow = Task()
    await follow.arun(helpers.identity, 1)
    await follow.arun(helpers.identity, 2)
    assert await follow.aget() == [1, 2]
    assert not marker.exists(), "a withdrawn call never starts"
    assert multicore.pool_info()["slots_in_use"] == 0


def test_a_sync_timeout_also_withdraws_queued_calls_first(pool, tmp_path):
    marker = tmp_path / "queued-call-ran"
    task = Task()
    task.run(helpers.sleep_then, 30, 0)
    task.run(helpers.sleep_then, 30, 1)
    task.run(helpers.touch, str(marker))
    with pytest.raises(TimeoutExceededError):
        task.get(timeout=0.3)
    assert wait_until(lambda: len(worker_pids()) == 2 and not busy_pids())
    check = Task()
    check.run(helpers.identity, 1)
    check.run(helpers.identity, 2)
    assert check.get() == [1, 2]
    assert not marker.exists()


@pytest.mark.asyncio
async def test_aget_times_out_like_get(pool):
    task = Task(timeout=0.2)
    await task.arun(helpers.sleep_then, 30, 0)
    with pytest.raises(TimeoutExceededError, match="aget"):
        await task.aget()
    assert wait_until(lambda: len(worker_pids()) == 2 and not busy_pids())


@pytest.mark.asyncio
async def test_a_dead_worker_fails_the_await_promptly(pool):
    task = Task()
    await task.arun(helpers.sleep_then, 30, 0)
    await task.arun(helpers.kill_self)
    started = time.monotonic()
    with pytest.raises(WorkerLostError) as info:
        await task.aget()
    assert time.monotonic() - started < 10
    assert info.value.signal == signal.SIGKILL


@pytest.mark.asyncio
async def test_a_dead_supervisor_fails_the_await(pool):
    task = Task()
    await task.arun(helpers.sleep_then, 30, 0)
    supervisor = multicore.pool_info()["supervisor_pid"]
    asyncio.get_running_loop().call_later(0.1, os.kill, supervisor, signal.SIGKILL)
    with pytest.raises(PoolUnavailableError):
        await task.aget()


@pytest.mark.asyncio
async def test_more_calls_than_slots_await_a_free_slot(pool):
    multicore.shutdown()
    multicore.initialize(workers=2, slots=2)
    task = Task()
    with Heartbeat() as beat:
        for i in range(10):
            await task.arun(helpers.sleep_then, 0.03, i)
        assert await task.aget() == list(range(10))
    assert beat.ticks > 10


@pytest.mark.asyncio
async def test_many_tasks_on_a_full_pool_wait_in_line_for_slots(pool):
    """Single-call Tasks beyond the slots queue on the loop: each result taken frees a slot for
    the next waiter (no timed retries needed); a waiter cancelled in line gives its turn on."""
    multicore.shutdown()
    multicore.initialize(workers=2, slots=2)

    async def one(i: int) -> list[int]:
        task = Task()
        await task.arun(helpers.sleep_then, 0.002, i)
        return await task.aget()

    with Heartbeat() as beat:
        coroutines = [asyncio.ensure_future(one(i)) for i in range(60)]
        await asyncio.sleep(0)
        coroutines[30].cancel()  # waiting in line for a slot
        results = await asyncio.gather(*coroutines, return_exceptions=True)
    assert isinstance(results[30], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 30] == [[i] for i in range(60) if i != 30]
    assert beat.worst_gap < 0.5 and multicore.pool_info()["slots_in_use"] == 0
    waiter = aio.waiter_for(asyncio.get_running_loop(), lifecycle.ensure_pool())
    assert not waiter.slot_waiters and not waiter.arrived


def test_a_slot_freed_by_another_thread_reaches_a_waiting_loop(pool):
    """Slots held by another thread's Task ring no loop: the waiting arun() finds them by the
    loop's re-check and goes on as soon as they are freed."""
    multicore.shutdown()
    multicore.initialize(workers=2, slots=2)
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        task = Task()
        task.run(helpers.sleep_then, 0.3, "a")
        task.run(helpers.sleep_then, 0.3, "b")
        held.set()
        assert task.get() == ["a", "b"]
        released.set()

    async def after() -> list[str]:
        task = Task()
        await task.arun(helpers.identity, "c")  # waits for one of the thread's slots
        return await task.aget()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    assert asyncio.run(after()) == ["c"]
    thread.join(10)
    assert released.is_set()


def test_two_loops_in_two_threads(pool):
    results: dict[int, list[int]] = {}

    async def batch(n: int) -> list[int]:
        task = Task()
        for i in range(20):
            await task.arun(helpers.sleep_then, 0.002, n * 100 + i)
        return await task.aget()

    def thread(n: int) -> None:
        results[n] = asyncio.run(batch(n))

    threads = [threading.Thread(target=thread, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {n: [n * 100 + i for i in range(20)] for n in (1, 2)}


def test_a_task_awaited_from_another_loop_says_so(pool):
    task = Task()

    async def start() -> None:
        await task.arun(helpers.identity, 1)

    async def collect() -> None:
        await task.aget()

    asyncio.run(start())
    with pytest.raises(EventLoopMismatchError, match="another event loop"):
        asyncio.run(collect())


@pytest.mark.asyncio
async def test_misuse_gets_the_sync_apis_errors(pool):
    task = Task()
    with pytest.raises(ValueError, match="serialization_format"):
        await task.arun(helpers.identity, 1, serialization_format="xml")
    with pytest.raises(SerializationError):
        await task.arun(helpers.identity, threading.Lock())
    await task.arun(helpers.identity, 1)
    assert await task.aget() == [1]
    with pytest.raises(TaskCompleteError):
        await task.aget()
    with pytest.raises(TaskCompleteError):
        await task.arun(helpers.identity, 2)


@pytest.mark.asyncio
async def test_leaving_async_with_on_an_error_stops_the_calls(pool):
    with pytest.raises(KeyError):
        async with Task() as task:
            await task.arun(helpers.sleep_then, 30, 0)
            assert wait_until(lambda: len(busy_pids()) == 1)
            (victim,) = busy_pids()
            raise KeyError("view failed")
    assert wait_until(lambda: not pid_alive(victim))
    assert wait_until(lambda: multicore.pool_info()["slots_in_use"] == 0)


@pytest.mark.asyncio
async def test_async_with_collects_normally(pool):
    async with Task() as task:
        await task.arun(helpers.add, 2, 3)
        assert await task.aget() == [5]


@pytest.mark.asyncio
async def test_a_large_result_is_decoded_off_the_loop(pool):
    task = Task()
    await task.arun(helpers.make_bytes, 3 << 20)
    (result,) = await task.aget()
    assert result == b"\xab" * (3 << 20)


@pytest.mark.asyncio
async def test_blocking_get_on_the_loop_thread_warns(pool):
    task = Task()
    task.run(helpers.sleep_then, 0.2, 1)
    with pytest.warns(MulticoreWarning, match=r"await task\.aget\(\)"):
        assert task.get() == [1]


@pytest.mark.asyncio
async def test_a_full_slot_run_on_the_loop_thread_warns(pool):
    multicore.shutdown()
    multicore.initialize(workers=2, slots=2)
    task = Task()
    task.run(helpers.sleep_then, 0.2, 0)
    task.run(helpers.sleep_then, 0.2, 1)
    with pytest.warns(MulticoreWarning, match=r"await task\.arun") as caught:
        task.run(helpers.identity, 2)
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert await task.aget() == [0, 1, 2]


def test_blocking_get_off_the_loop_does_not_warn(pool, recwarn):
    task = Task()
    task.run(helpers.sleep_then, 0.1, 1)
    assert task.get() == [1]
    assert not [w for w in recwarn if issubclass(w.category, MulticoreWarning)]


def test_a_loop_without_add_reader_waits_in_a_thread():
    run_python(
        """
        import asyncio, multicore
        from multicore import Task
        from tests.core import helpers

        class NoReaders(asyncio.SelectorEventLoop):
            def add_reader(self, *a):
                raise NotImplementedError

        async def main():
            task = Task()
            for i in range(5):
                await task.arun(helpers.sleep_then, 0.01, i)
            assert await task.aget() == list(range(5))

        loop = NoReaders()
        loop.run_until_complete(main())
        loop.close()
        multicore.shutdown()
        """
    )
