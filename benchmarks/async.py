"""Awaiting the pool from asyncio: multicore's arun()/aget() against its peers, 2 workers each.

    python benchmarks/async.py            # a full run (make bench-async), about a minute; markdown on stdout
    python benchmarks/async.py --quick    # smoke run (seconds); its figures are not measurements

(a) one awaited tiny call's round trip (median): multicore sync get() for reference,
    multicore aget(), loop.run_in_executor(ProcessPoolExecutor), anyio.to_process.run_sync,
    sync_to_async(task.get) as Django code writes it (thread_sensitive=True) and with
    thread_sensitive=False.
(b) 1,000 concurrent awaited tiny calls (asyncio.gather): wall time, threads alive at the end,
    and the event-loop lag seen by a 1 ms heartbeat: the first gap holds the submission burst
    (every coroutine's first step, before its first await, runs in one loop iteration whatever
    the library), the worst later gap is the lag while the pool is busy.
(c) a cancelled 30 s call: time from the cancel until its worker process is gone (multicore;
    anyio with cancellable=True kills its worker too).
(d) the example project's async view /async-report/ under uvicorn (1 worker, SQLite, 3,000
    products): the scoring awaited on the pool with arun()/aget() vs the same view with
    ?inline=1 doing it in the server process (median of 7 each, alternating).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import sys
import threading
import time
import warnings

import anyio
import anyio.to_process
from asgiref.sync import sync_to_async

import multicore
from multicore import Task
from multicore.exceptions import MulticoreWarning

# benchmarks/http.py is named like the stdlib's http package (which the uvicorn client part needs):
# this directory goes last on the import path, for _util only.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE] + [HERE]
from _util import machine_line, nap, tiny  # noqa: E402

WORKERS = 2


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def rt_aget() -> None:
    task = Task()
    await task.arun(tiny, 1)
    await task.aget()


def rt_sync() -> None:
    task = Task()
    task.run(tiny, 1)
    task.get()


async def rt_executor(loop: asyncio.AbstractEventLoop, ppe: concurrent.futures.ProcessPoolExecutor) -> None:
    await loop.run_in_executor(ppe, tiny, 1)


async def rt_anyio(limiter: anyio.CapacityLimiter) -> None:
    await anyio.to_process.run_sync(tiny, 1, limiter=limiter)


async def rt_sync_to_async() -> None:
    task = Task()
    task.run(tiny, 1)
    await sync_to_async(task.get)()  # thread_sensitive=True, Django's default


async def rt_sync_to_async_free() -> None:
    task = Task()
    task.run(tiny, 1)
    await sync_to_async(task.get, thread_sensitive=False)()


class Lag:
    """A 1 ms heartbeat: how late each beat came (the loop was busy meanwhile)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.stop = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self.stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.gaps.append(max(0.0, now - last - 0.001))
            last = now


async def timed(n: int, make) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await make()
        out.append(time.perf_counter() - t0)
    return out


async def fan_out(n: int, one) -> tuple[float, int, float, float]:
    """(wall, threads after, the submission burst's gap, the worst gap after it)."""
    lag = Lag()
    beat = asyncio.get_running_loop().create_task(lag.run())
    await asyncio.sleep(0.01)
    before = len(lag.gaps)
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    threads = threading.active_count()
    lag.stop = True
    await beat
    gaps = lag.gaps[before:]
    return wall, threads, gaps[0] if gaps else 0.0, max(gaps[1:], default=0.0)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def cancel_latency() -> float:
    task = Task()
    await task.arun(nap, 30)
    while not [w for w in multicore.pool_info()["workers"] if w["state"] == "busy"]:
        await asyncio.sleep(0.001)
    (pid,) = [w["pid"] for w in multicore.pool_info()["workers"] if w["state"] == "busy"]
    pending = asyncio.get_running_loop().create_task(task.aget())
    await asyncio.sleep(0.01)
    return await time_cancel(pending, gone=lambda: not alive(pid))


async def time_cancel(pending: asyncio.Task, gone) -> float:
    """Seconds from cancelling ``pending`` until ``gone()`` says the worker running it has exited."""
    t0 = time.perf_counter()
    pending.cancel()
    try:
        await pending
    except asyncio.CancelledError:
        pass
    while not gone():
        await asyncio.sleep(0.0001)
    return time.perf_counter() - t0


def anyio_workers() -> set[int]:
    """anyio's worker processes (children of this process running anyio.to_process)."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if parent == me and b"anyio.to_process" in command:
            found.add(int(entry))
    return found


async def anyio_cancel_latency(limiter: anyio.CapacityLimiter) -> float:
    before = anyio_workers()
    pending = asyncio.get_running_loop().create_task(
        anyio.to_process.run_sync(nap, 30, cancellable=True, limiter=limiter)
    )
    await asyncio.sleep(0.2)  # it has started in one of the workers
    return await time_cancel(pending, gone=lambda: not (before and before <= anyio_workers()))


def view_under_uvicorn(quick: bool) -> tuple[float, float, int]:
    """Median ms of /async-report/ on the pool and with ?inline=1, and the products scored."""
    import json
    import tempfile

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "example_project"))
    import runner

    products = 400 if quick else 3000
    repeat = 2 if quick else 7
    with tempfile.TemporaryDirectory(prefix="multicore-bench-async-") as tmp:
        env = runner.project_env(EXAMPLE_SQLITE_NAME=os.path.join(tmp, "db.sqlite3"))
        env.pop("DATABASE_URL", None)
        runner.prepare_database(env, products=products)
        with runner.Uvicorn(env, workers=1, log_file=os.path.join(tmp, "uvicorn.log")) as server:
            pooled, inline = [], []
            for path in ("/async-report/", "/async-report/?inline=1"):  # warm both
                server.request(path)
            for _ in range(repeat):
                for path, times in (("/async-report/", pooled), ("/async-report/?inline=1", inline)):
                    status, body, seconds = server.request(path)
                    assert status == 200 and json.loads(body)["parallel"] == (times is pooled), body[:200]
                    times.append(seconds)
    return statistics.median(pooled) * 1e3, statistics.median(inline) * 1e3, products


async def main(quick: bool) -> None:
    # The sync reference and sync_to_async's run() are blocking calls on the loop thread on purpose
    # (that is what they measure); their MulticoreWarning would only clutter the report.
    warnings.simplefilter("ignore", MulticoreWarning)
    n = 200 if quick else 3000
    fan = 100 if quick else 1000
    loop = asyncio.get_running_loop()
    multicore.initialize(workers=WORKERS)
    multicore.warm_up()
    ppe = concurrent.futures.ProcessPoolExecutor(WORKERS)
    await asyncio.gather(*(rt_executor(loop, ppe) for _ in range(WORKERS * 2)))  # start its workers
    limiter = anyio.CapacityLimiter(WORKERS)
    await asyncio.gather(*(rt_anyio(limiter) for _ in range(WORKERS * 2)))  # and anyio's
    rows = []
    sync = []
    for _ in range(n):
        t0 = time.perf_counter()
        rt_sync()
        sync.append(time.perf_counter() - t0)
    rows.append(("multicore get() (sync, reference)", median_us(sync)))
    rows.append(("multicore await aget()", median_us(await timed(n, rt_aget))))
    rows.append(("run_in_executor(ProcessPoolExecutor)", median_us(await timed(n, lambda: rt_executor(loop, ppe)))))
    rows.append(("anyio.to_process.run_sync", median_us(await timed(n, lambda: rt_anyio(limiter)))))
    rows.append(("sync_to_async(task.get)", median_us(await timed(n // 4, rt_sync_to_async))))
    rows.append(
        ("sync_to_async(task.get, thread_sensitive=False)", median_us(await timed(n // 4, rt_sync_to_async_free)))
    )
    print(machine_line())
    print(f"\n(a) one awaited tiny call, median of {n} round trips\n")
    print("| how | round trip (µs) | vs multicore aget() |\n|---|---:|---:|")
    aget_us = rows[1][1]
    for name, us in rows:
        print(f"| {name} | {us:.1f} | {us / aget_us:.2f}x |")

    print(f"\n(b) {fan} concurrent awaited tiny calls (threads alive before: {threading.active_count()})\n")
    print(
        "| how | wall (ms) | threads after | submission burst (ms) | worst loop lag while the pool is busy (ms) |\n"
        "|---|---:|---:|---:|---:|"
    )
    for name, one in (
        ("multicore arun/aget", rt_aget),
        ("run_in_executor(PPE)", lambda: rt_executor(loop, ppe)),
        ("anyio.to_process.run_sync", lambda: rt_anyio(limiter)),
        ("sync_to_async(task.get)", rt_sync_to_async),
    ):
        wall, threads, burst, worst = await fan_out(fan, one)
        print(f"| {name} | {wall * 1e3:.1f} | {threads} | {burst * 1e3:.2f} | {worst * 1e3:.2f} |")

    latency = await cancel_latency()
    anyio_latency = await anyio_cancel_latency(limiter)
    print("\n(c) a cancelled await on a 30 s call: time until its worker process is gone\n")
    print("| how | worker gone after (ms) |\n|---|---:|")
    print(f"| multicore aget() | {latency * 1e3:.2f} |")
    print(f"| anyio.to_process.run_sync(cancellable=True) | {anyio_latency * 1e3:.2f} |")
    print("| run_in_executor(PPE) | never: it cannot stop a running call (python/cpython#107505) |")
    print("| sync_to_async(task.get) | never: the thread's get() goes on; the call runs to its end |")
    ppe.shutdown(wait=False, cancel_futures=True)
    multicore.shutdown()
    # Off this loop: the server test blocks (it is a client of another process).
    pooled, inline, products = await asyncio.to_thread(view_under_uvicorn, quick)
    print(f"\n(d) /async-report/ under uvicorn (1 worker, {WORKERS} pool workers, SQLite, {products} products)\n")
    print("| view | median (ms) |\n|---|---:|")
    print(f"| arun()/aget() on the pool | {pooled:.1f} |")
    print(f"| the same work inline (?inline=1) | {inline:.1f} |")
    print(f"\nspeed-up: {inline / pooled:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
