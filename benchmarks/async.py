"""Awaiting the pool from asyncio: multicore's arun()/aget() against its peers, 2 workers each.

    python benchmarks/async.py            # a full run, about a minute; markdown on stdout
    python benchmarks/async.py --quick    # smoke run (seconds); its figures are not measurements

(a) one awaited tiny call's round trip (median): multicore sync get() for reference,
    multicore aget(), loop.run_in_executor(ProcessPoolExecutor), sync_to_async(task.get).
(b) 1,000 concurrent awaited tiny calls: wall time, threads alive at the end, worst event-loop
    lag seen by a 1 ms heartbeat meanwhile.
(c) a cancelled 30 s call: time from the cancel until its worker process is gone.
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

from asgiref.sync import sync_to_async

import multicore
from multicore import Task
from multicore.exceptions import MulticoreWarning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import machine_line, nap, tiny

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


async def rt_sync_to_async() -> None:
    task = Task()
    task.run(tiny, 1)
    await sync_to_async(task.get, thread_sensitive=False)()


class Lag:
    def __init__(self) -> None:
        self.worst = 0.0
        self.stop = False

    async def run(self) -> None:
        last = time.perf_counter()
        while not self.stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now


async def timed(n: int, make) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await make()
        out.append(time.perf_counter() - t0)
    return out


async def fan_out(n: int, one) -> tuple[float, int, float]:
    lag = Lag()
    beat = asyncio.get_running_loop().create_task(lag.run())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - t0
    threads = threading.active_count()
    lag.stop = True
    await beat
    return wall, threads, lag.worst


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
    t0 = time.perf_counter()
    pending.cancel()
    try:
        await pending
    except asyncio.CancelledError:
        pass
    while alive(pid):
        await asyncio.sleep(0.0001)
    return time.perf_counter() - t0


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
    rows = []
    sync = []
    for _ in range(n):
        t0 = time.perf_counter()
        rt_sync()
        sync.append(time.perf_counter() - t0)
    rows.append(("multicore get() (sync, reference)", median_us(sync)))
    rows.append(("multicore await aget()", median_us(await timed(n, rt_aget))))
    rows.append(("run_in_executor(ProcessPoolExecutor)", median_us(await timed(n, lambda: rt_executor(loop, ppe)))))
    rows.append(("sync_to_async(task.get)", median_us(await timed(n // 4, rt_sync_to_async))))
    print(machine_line())
    print(f"\n(a) one awaited tiny call, median of {n} round trips\n")
    print("| how | round trip (µs) |\n|---|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")

    print(f"\n(b) {fan} concurrent awaited tiny calls (threads alive before: {threading.active_count()})\n")
    print("| how | wall (ms) | threads after | worst loop lag (ms) |\n|---|---:|---:|---:|")
    for name, one in (
        ("multicore arun/aget", rt_aget),
        ("run_in_executor(PPE)", lambda: rt_executor(loop, ppe)),
        ("sync_to_async(task.get)", rt_sync_to_async),
    ):
        wall, threads, worst = await fan_out(fan, one)
        print(f"| {name} | {wall * 1e3:.1f} | {threads} | {worst * 1e3:.2f} |")

    latency = await cancel_latency()
    print(
        f"\n(c) multicore: a cancelled aget() on a 30 s call: its worker gone after {latency * 1e3:.2f} ms "
        "(run_in_executor cannot stop a running call: python/cpython#107505)"
    )
    ppe.shutdown(wait=False, cancel_futures=True)
    multicore.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
