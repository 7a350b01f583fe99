"""The dask backend against the local pool and against plain ``distributed.Client.submit/gather``.

    python benchmarks/dask.py            # the measurement (about four minutes); run it on a quiet machine
    python benchmarks/dask.py --quick    # smoke run; its figures are not measurements

It starts its own cluster like the tests do (tests/dask/cluster.py: a ``dask scheduler`` and two
``dask worker --nthreads 1`` processes with nannies on 127.0.0.1) and stops it at the end.
Measured, side by side in rounds whose order rotates:

- round trip: one call, ``Task().run(); get()``, repeated; the median;
- many tiny calls: 20,000 calls of ``tiny(i)`` in one Task; the whole batch;
- CPU-bound: 8 chunks of pure-Python work (``burn``) on the 2 single-threaded workers, through the
  dask backend and through plain Dask, against the same chunks run one after the other in a forked
  child (a process with one thread, like the two bare forked children that give the machine's
  ceiling: this process has the Dask clients' event-loop threads). Twice: on workers with Dask's
  defaults, and on workers with the settings docs/dask.md gives for CPU-bound work
  (``CPU_BOUND_WORKERS``: no statistical profiler, a 1 s event-loop tick), a second cluster.

Targets (issue 10): the dask backend adds at most 10% over plain Dask (round trip and many tiny
calls); the CPU-bound job reaches at least 1.8x on 2 workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# This file is called dask.py: its own folder must not be on the path, or it would be `import dask`.
sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or ".") != HERE]
os.environ.pop("DJANGO_SETTINGS_MODULE", None)  # plain Python: no Django on either side

import multicore  # noqa: E402
from benchmarks._util import (  # noqa: E402 - by reference, on the workers too
    TICK,
    Noise,
    burn,
    cpu_ticks,
    descendants,
    machine_line,
    median,
    rotated,
    tiny,
    wait_quiet,
)
from tests.dask.cluster import Cluster  # noqa: E402


@dataclass
class Settings:
    roundtrip_calls: int = 300
    many_calls: int = 20_000
    rounds: int = 3
    cpu_rounds: int = 5
    cpu_chunks: int = 8
    cpu_chunk_s: float = 0.3  # as in benchmarks/core.py


QUICK = Settings(roundtrip_calls=20, many_calls=500, rounds=1, cpu_rounds=1, cpu_chunks=4, cpu_chunk_s=0.05)

# What docs/dask.md recommends for workers that run CPU-bound calls: every 10 ms Dask's profiler,
# and every 20 ms the event loop's tick, take the GIL from the running call.
CPU_BOUND_WORKERS = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
}


def calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        t0 = time.perf_counter()
        burn(n)
        t = time.perf_counter() - t0
        if t > 0.05:
            return max(1, int(n * seconds / t))
        n *= 4


class MulticoreRunner:
    def __init__(self, backend: str) -> None:
        self.name = f"multicore {backend}"
        self.backend = backend

    def run(self, fn, arglists):
        task = multicore.Task(backend=self.backend)
        for args in arglists:
            task.run(fn, *args)
        return task.get(timeout=600)


class PlainDask:
    name = "plain distributed"

    def __init__(self, client) -> None:
        self.client = client

    def run(self, fn, arglists):
        futures = [self.client.submit(fn, *args, pure=False) for args in arglists]
        return self.client.gather(futures)


def bare_fork(arglists, workers: int = 2) -> None:
    """Forked children run the chunks, nothing is sent anywhere: with 2, the machine's ceiling;
    with 1, the sequential baseline (a child has only the thread that forked it)."""
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            for args in arglists[w::workers]:
                burn(*args)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def roundtrip(runner, calls: int) -> float:
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        assert runner.run(tiny, [(i,)]) == [i]
        times.append(time.perf_counter() - t0)
    return median(times)


def many(runner, calls: int) -> float:
    arglists = [(i,) for i in range(calls)]
    t0 = time.perf_counter()
    result = runner.run(tiny, arglists)
    elapsed = time.perf_counter() - t0
    assert result == list(range(calls))
    return elapsed


def cpu_bound(s: Settings, runners: list) -> dict[str, float]:
    """Median seconds of the CPU-bound job: sequential (one forked child), each runner, 2 bare forks."""
    n = calibrate(s.cpu_chunk_s)
    arglists = [(n,)] * s.cpu_chunks
    expected = [burn(n)] * s.cpu_chunks
    times: dict[str, list[float]] = {"sequential": [], "bare forks": [], **{r.name: [] for r in runners}}
    foreign = []
    for round_no in range(s.cpu_rounds):  # back to back, so that all see the same machine
        wait_quiet(20)
        with Noise() as noise:
            t0 = time.perf_counter()
            bare_fork(arglists, workers=1)
            times["sequential"].append(time.perf_counter() - t0)
            for runner in rotated(runners, round_no):
                t0 = time.perf_counter()
                assert runner.run(burn, arglists) == expected
                times[runner.name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_fork(arglists)
            times["bare forks"].append(time.perf_counter() - t0)
        foreign.append(noise.foreign_pct)
    out = {name: median(values) for name, values in times.items()}
    out["foreign"] = median(foreign)
    return out


def idle_cpu(cluster, seconds: float = 5.0) -> dict[str, float]:
    """% of a core each kind of cluster process uses while nothing runs (summed over the workers)."""
    kinds: dict[int, str] = {}
    for proc in cluster.procs:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with open(f"/proc/{pid}/cmdline") as f:
                argv = f.read().split("\0")
            kinds[pid] = "scheduler" if "scheduler" in argv else "nannies" if pid == proc.pid else "workers"

    def ticks() -> dict[int, int]:
        return {pid: cpu_ticks(pid) for pid in kinds}

    before = ticks()
    time.sleep(seconds)
    after = ticks()
    used: dict[str, float] = {}
    for pid, kind in kinds.items():
        used[kind] = used.get(kind, 0.0) + 100.0 * (after[pid] - before[pid]) / TICK / seconds
    return used


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run; figures are not measurements")
    parser.add_argument("--cpu-chunk-s", type=float, help="seconds of work per CPU-bound chunk (default 0.3)")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU-bound job")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
    if args.cpu_chunk_s:
        s.cpu_chunk_s = args.cpu_chunk_s
    if args.cpu_only:
        s.roundtrip_calls, s.many_calls = 1, 1
    machine = machine_line()

    import distributed
    from distributed import Client

    cpu: dict[str, dict[str, float]] = {}
    idle: dict[str, dict[str, float]] = {}
    for label, worker_env in (("Dask's defaults", {}), ("CPU-bound settings", CPU_BOUND_WORKERS)):
        cluster = Cluster(workers=2, worker_env=worker_env).start()
        plain_client = None
        try:
            multicore.initialize(workers=2)  # the local pool, for comparison
            multicore.initialize(backend="dask", dask_address=cluster.address)
            plain_client = Client(cluster.address, set_as_default=False)
            runners = [MulticoreRunner("dask"), PlainDask(plain_client), MulticoreRunner("local")]
            for runner in runners:  # warm up: imports on the workers, connections, caches
                many(runner, 200)
            if not worker_env:  # the per-call figures: once, on Dask's defaults
                rt: dict[str, list[float]] = {r.name: [] for r in runners}
                mn: dict[str, list[float]] = {r.name: [] for r in runners}
                for round_no in range(s.rounds):
                    for runner in rotated(runners, round_no):
                        rt[runner.name].append(roundtrip(runner, s.roundtrip_calls))
                        mn[runner.name].append(many(runner, s.many_calls))
            cpu[label] = cpu_bound(s, runners[:2])
            idle[label] = idle_cpu(cluster, 1.0 if s is QUICK else 5.0)
        finally:
            if plain_client is not None:
                plain_client.close()
            multicore.shutdown()
            cluster.stop()

    d, p, l_ = (median(rt[r.name]) for r in runners)
    md, mp, ml = (median(mn[r.name]) for r in runners)
    print(f"**Machine:** {machine}, dask/distributed {distributed.__version__}\n")
    print(
        f"**Command:** `python benchmarks/dask.py{' --quick' if s is QUICK else ''}` "
        f"({s.rounds} rounds, {s.cpu_rounds} CPU-bound rounds, medians; cluster: scheduler + 2 workers, 1 thread each)\n"
    )
    print("| measurement | multicore dask | plain distributed | dask vs plain | multicore local |")
    print("|---|---:|---:|---:|---:|")
    print(f"| round trip, one call | {d * 1e3:.2f} ms | {p * 1e3:.2f} ms | {d / p - 1:+.1%} | {l_ * 1e6:.1f} µs |")
    print(
        f"| {s.many_calls:,} tiny calls, one Task | {md:.2f} s | {mp:.2f} s | {md / mp - 1:+.1%} | {ml * 1e3:.1f} ms |"
    )
    print(
        f"| per tiny call | {md / s.many_calls * 1e6:.0f} µs | {mp / s.many_calls * 1e6:.0f} µs | | "
        f"{ml / s.many_calls * 1e6:.2f} µs |"
    )
    first = next(iter(cpu.values()))
    print(f"\nCPU-bound: {s.cpu_chunks} chunks of {first['sequential'] / s.cpu_chunks:.2f} s on 2 workers\n")
    print(
        "| workers | sequential | multicore dask | plain distributed | dask vs plain | bare forks (ceiling) | other processes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, t in cpu.items():
        seq, md_, pd_, bf = t["sequential"], t["multicore dask"], t["plain distributed"], t["bare forks"]
        print(
            f"| {label} | {seq:.2f} s | {md_:.2f} s = **{seq / md_:.2f}x** | {pd_:.2f} s = {seq / pd_:.2f}x | "
            f"{md_ / pd_ - 1:+.1%} | {bf:.2f} s = {seq / bf:.2f}x | {t['foreign']:.0f}% |"
        )
    print("\nIdle CPU of the cluster's processes (% of one core, the two of each summed):\n")
    print("| workers | scheduler | nannies | workers |")
    print("|---|---:|---:|---:|")
    for label, used in idle.items():
        print(
            f"| {label} | {used.get('scheduler', 0):.1f}% | {used.get('nannies', 0):.1f}% | {used.get('workers', 0):.1f}% |"
        )
    tuned = cpu["CPU-bound settings"]
    speedup = tuned["sequential"] / tuned["multicore dask"]
    checks = [
        (d / p - 1 <= 0.10, f"round trip within 10% of plain Dask ({d / p - 1:+.1%})"),
        (md / mp - 1 <= 0.10, f"{s.many_calls:,} tiny calls within 10% of plain Dask ({md / mp - 1:+.1%})"),
        (speedup >= 1.8, f"CPU-bound speed-up at least 1.8x, workers with the CPU-bound settings ({speedup:.2f}x)"),
    ]
    print()
    for ok, text in checks:
        print(f"- {'met' if ok else 'MISSED'}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
