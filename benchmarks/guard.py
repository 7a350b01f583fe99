"""What multicore's two guards cost: the load-average guard of every ``Task()``, and how often
the DRF patch's busy-CPU guard would say "busy" on this machine, per schedule.

    python benchmarks/guard.py            # about a minute

The load-average guard (``Task(max_load_average=...)``, on in Django by default: 0.85 per CPU)
compares the load with the usable CPUs on every ``Task()``: a round trip with it on is timed
against one with it off, in alternating rounds.

For the busy-CPU guard, run it on an otherwise idle machine: every "busy" it counts is a
single-client request that the patch would have served sequentially for a moment's activity of
some other program. The guard (``multicore.drf.policy.cores_free``) says "busy" when the
kernel's count of runnable threads leaves fewer idle CPUs than wanted (1) at every reading of
its schedule, ``policy.CONFIRM_AT``; it is run with that schedule, with a single reading and
with a longer window, in turns. Results: docs/drf.md ("When DRF serializes as usual").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# benchmarks/http.py is named like the stdlib's http package (which Django imports): keep this
# directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def guard_says_busy(policy, schedule: tuple[float, ...]) -> bool:
    """One decision of ``policy.cores_free`` (1 idle CPU wanted) with ``schedule`` as its readings."""

    class View:
        multicore_min_idle_cpus = 1

    saved, policy.CONFIRM_AT = policy.CONFIRM_AT, schedule
    try:
        return not policy.cores_free(View)
    finally:
        policy.CONFIRM_AT = saved


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
    import django
    from django.conf import settings

    settings.configure()  # DRF's pagination module, which the policy imports, reads settings
    django.setup()
    from multicore.drf import policy

    schedules = {
        "one reading": (0.0,),
        f"{len(policy.CONFIRM_AT)} readings over {policy.CONFIRM_AT[-1] * 1000:g} ms (policy.CONFIRM_AT)": (
            policy.CONFIRM_AT
        ),
        "4 readings over 1.5 ms (tried, see docs/drf.md)": (0.0, 0.0003, 0.0008, 0.0015),
    }
    counts = dict.fromkeys(schedules, 0)
    for _ in range(args.decisions):
        for name, schedule in schedules.items():  # interleaved: each sees the same machine
            counts[name] += guard_says_busy(policy, schedule)
            time.sleep(0.003)
    print(f"{len(os.sched_getaffinity(0))} CPUs, {args.decisions} decisions per schedule; said busy:")
    for name, count in counts.items():
        print(f"  {name}: {count}/{args.decisions}")


if __name__ == "__main__":
    main()
