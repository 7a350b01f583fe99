"""How often the DRF patch's busy-CPU guard would say "busy" on this machine, per schedule.

    python benchmarks/guard.py            # 3,000 decisions per schedule, about a minute

Run it on an otherwise idle machine: every "busy" it counts is a single-client request that the
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per schedule (default 3000)")
    args = parser.parse_args()
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
