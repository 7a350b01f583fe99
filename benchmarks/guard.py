"""What multicore's two guards cost: the load-average guard of every ``Task()``, and how often
the DRF patch's busy-CPU guard would say "busy" on this machine, per schedule.

    python benchmarks/guard.py            # about a minute

The load-average guard (``Task(max_load_average=...)``, on in Django by default: 0.85 per CPU)
compares the load with the usable CPUs on every ``Task()``: a round trip with it on is timed
against one with it off, in alternating rounds.

For the busy-CPU guard, run it on an otherwise idle machine: every "busy" it counts is a single-client request that the
patch would have served sequentially for a moment's activity of some other program. The guard
(``multicore.drf.policy.cores_free``) says "busy" when the kernel's count of runnable threads
leaves fewer idle CPUs than wanted (1) at every reading of its schedule; the second schedule
below is ``policy.CONFIRM_AT``. Results: docs/drf.md ("When DRF serializes as usual").
"""

from __future__ import annotations

import argparse
import os
import time

SCHEDULES = {
    "one reading": (0.0,),
    "3 readings over 0.6 ms (policy.CONFIRM_AT)": (0.0, 0.0003, 0.0006),
    "4 readings over 1.5 ms (tried, see docs/drf.md)": (0.0, 0.0003, 0.0008, 0.0015),
}


def running() -> int:
    with open("/proc/loadavg", "rb") as f:
        return int(f.read().split()[3].split(b"/")[0])


def busy(schedule: tuple[float, ...], cpus: int, wanted: int = 1) -> bool:
    began = time.perf_counter()
    for at in schedule:
        if at:
            time.sleep(max(0.0, began + at - time.perf_counter()))
        if cpus - running() >= wanted:
            return False
    return True


def echo(x: int) -> int:
    return x


def task_round_trips(rounds: int = 5, calls: int = 3000) -> dict[str, float]:
    """Median µs of a ``Task()`` + ``run()`` + ``get()`` with the load guard off and on."""
    import statistics

    import multicore

    multicore.initialize(workers=2)
    limits = {"load guard off (max_load_average=None)": None, "load guard on (max_load_average=0.85)": 0.85}
    times: dict[str, list[float]] = {name: [] for name in limits}
    try:
        for _ in range(rounds):
            for name, limit in limits.items():
                began = time.perf_counter()
                for i in range(calls):
                    task = multicore.Task(max_load_average=limit)
                    if task is None:
                        raise SystemExit("the machine is above the load limit: run this on an idle machine")
                    task.run(echo, i)
                    task.get()
                times[name].append((time.perf_counter() - began) / calls * 1e6)
    finally:
        multicore.shutdown()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per schedule (default 3000)")
    args = parser.parse_args()
    print("Task() round trip, median of 5 rounds of 3,000:")
    for name, micros in task_round_trips().items():
        print(f"  {name}: {micros:.1f} µs")
    cpus = len(os.sched_getaffinity(0))
    counts = dict.fromkeys(SCHEDULES, 0)
    for _ in range(args.decisions):
        for name, schedule in SCHEDULES.items():  # interleaved: each sees the same machine
            counts[name] += busy(schedule, cpus)
            time.sleep(0.003)
    print(f"{cpus} CPUs, {args.decisions} decisions per schedule; said busy:")
    for name, count in counts.items():
        print(f"  {name}: {count}/{args.decisions}")


if __name__ == "__main__":
    main()
