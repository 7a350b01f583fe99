"""The dask backend against the local pool and against plain ``distributed.Client.submit/gather``.

    python benchmarks/dask.py            # the measurement (about four minutes); run it on a quiet machine
    python benchmarks/dask.py --quick    # smoke run; its figures are not measurements

It starts its own cluster like the tests do (tests/dask/cluster.py: a ``dask scheduler`` and two
``dask worker --nthreads 1`` processes with nannies on 127.0.0.1) and stops it at the end.
Measured, side by side in rounds whose order rotates:

- round trip: one call, ``Task().run(); get()``, repeated; the median;
- many tiny calls: 20,000 calls of ``tiny(i)`` in one Task; the whole batch;
- CPU-bound: 8 chunks of pure-Python work (``burn``) on the 2 single-threaded workers, against the
  same chunks run one after the other in this process.

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
from benchmarks._util import Noise, burn, median, rotated, tiny, wait_quiet  # noqa: E402 - by reference, on the workers too
from tests.dask.cluster import Cluster  # noqa: E402


@dataclass
class Settings:
    roundtrip_calls: int = 300
    many_calls: int = 20_000
    rounds: int = 3
    cpu_chunks: int = 8
    cpu_chunk_s: float = 0.3  # as in benchmarks/core.py


QUICK = Settings(roundtrip_calls=20, many_calls=500, rounds=1, cpu_chunks=4, cpu_chunk_s=0.05)


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
    """The machine's ceiling: two forked children run the chunks, nothing is sent anywhere."""
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

    from distributed import Client

    cluster = Cluster(workers=2).start()
    plain_client = None
    try:
        multicore.initialize(workers=2)  # the local pool, for comparison
        multicore.initialize(backend="dask", dask_address=cluster.address)
        plain_client = Client(cluster.address, set_as_default=False)
        runners = [MulticoreRunner("dask"), PlainDask(plain_client), MulticoreRunner("local")]
        for runner in runners:  # warm up: imports on the workers, connections, caches
            many(runner, 200)

        rt: dict[str, list[float]] = {r.name: [] for r in runners}
        mn: dict[str, list[float]] = {r.name: [] for r in runners}
        for round_no in range(s.rounds):
            for runner in rotated(runners, round_no):
                rt[runner.name].append(roundtrip(runner, s.roundtrip_calls))
                mn[runner.name].append(many(runner, s.many_calls))

        n = calibrate(s.cpu_chunk_s)
        arglists = [(n,)] * s.cpu_chunks
        expected = [burn(n)] * s.cpu_chunks
        dask_runner = runners[0]
        seq_times, cpu_times, fork_times, foreign = [], [], [], []
        for _ in range(s.rounds):  # alternating, so that all three see the same machine
            wait_quiet(20)
            with Noise() as noise:
                t0 = time.perf_counter()
                assert [burn(*a) for a in arglists] == expected
                seq_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert dask_runner.run(burn, arglists) == expected
                cpu_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                bare_fork(arglists)
                fork_times.append(time.perf_counter() - t0)
            foreign.append(noise.foreign_pct)
        sequential, cpu, forked = median(seq_times), median(cpu_times), median(fork_times)
    finally:
        if plain_client is not None:
            plain_client.close()
        multicore.shutdown()
        cluster.stop()

    d, p, l_ = (median(rt[r.name]) for r in runners)
    md, mp, ml = (median(mn[r.name]) for r in runners)
    speedup = sequential / cpu
    print(
        f"**Command:** `python benchmarks/dask.py{' --quick' if s is QUICK else ''}` "
        f"({s.rounds} rounds, medians; {os.cpu_count()} CPUs; cluster: scheduler + 2 workers, 1 thread each)\n"
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
    print(
        f"\nCPU-bound: {s.cpu_chunks} chunks of {sequential / s.cpu_chunks:.2f} s: sequential {sequential:.2f} s, "
        f"dask backend on 2 workers {cpu:.2f} s = **{speedup:.2f}x**; the machine's ceiling (2 bare forked "
        f"children) {forked:.2f} s = {sequential / forked:.2f}x; other processes used "
        f"{median(foreign):.0f}% of the machine meanwhile\n"
    )
    checks = [
        (d / p - 1 <= 0.10, f"round trip within 10% of plain Dask ({d / p - 1:+.1%})"),
        (md / mp - 1 <= 0.10, f"{s.many_calls:,} tiny calls within 10% of plain Dask ({md / mp - 1:+.1%})"),
        (speedup >= 1.8, f"CPU-bound speed-up at least 1.8x ({speedup:.2f}x)"),
    ]
    for ok, text in checks:
        print(f"- {'met' if ok else 'MISSED'}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
