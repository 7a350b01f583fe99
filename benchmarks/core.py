"""multicore against multiprocessing.Pool, ProcessPoolExecutor, loky and mpire, 2 workers each.

    python benchmarks/core.py            # full run, a few minutes; markdown report on stdout
    python benchmarks/core.py --quick    # smoke run (seconds); its figures are not measurements

The method (interleaving, rounds, medians, what each figure counts) is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time

try:
    import loky
    import mpire
except ImportError as exc:
    sys.exit(f"benchmarks/core.py compares against loky and mpire ({exc}): pip install -e '.[bench]'")

import multicore
from multicore import Task
from multicore._pool.task import auto_chunksize
from multicore.utils import ranges

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import (
    TICK,
    Noise,
    burn,
    cpu_ns,
    cpu_ticks,
    descendants,
    echo,
    loadavg,
    machine_line,
    median,
    nap,
    percentile,
    progress,
    rotated,
    tiny,
    tiny_range,
    wait_quiet,
)

WORKERS = 2
LIBS = ("multicore", "mp.Pool", "PPE", "loky")
PEERS = LIBS[1:]


@dataclasses.dataclass
class Settings:
    rt_rounds: int = 5  # (a) rounds; each times rt_calls round trips per library
    rt_warmup: int = 300
    rt_calls: int = 2000
    many_rounds: int = 3  # (b)
    many_calls: int = 20_000
    echo_rounds: int = 3  # (c)
    echo_sizes: tuple = ((1 << 20, 20), (100 << 20, 3))  # (bytes, calls per round)
    cpu_rounds: int = 3  # (d)
    cpu_chunks: int = 8
    cpu_chunk_s: float = 0.3
    start_rounds: int = 5  # (e)
    idle_s: float = 3.0  # (f)
    rss_payload_mb: int = 100  # (g)
    rss_rest_s: float = 2.0
    quiet_wait_s: float = 30.0  # longest wait for a quiet machine before each section


QUICK = Settings(
    rt_rounds=2,
    rt_warmup=50,
    rt_calls=200,
    many_rounds=1,
    many_calls=2000,
    echo_rounds=1,
    echo_sizes=((1 << 20, 3), (10 << 20, 1)),
    cpu_rounds=1,
    cpu_chunk_s=0.05,
    start_rounds=1,
    idle_s=1.0,
    rss_payload_mb=40,
    rss_rest_s=1.5,
    quiet_wait_s=0.0,
)

# --- the four libraries behind one interface ----------------------------------------------------


def start(lib):
    if lib == "multicore":
        multicore.initialize(workers=WORKERS)
        return None
    if lib == "mp.Pool":
        return multiprocessing.Pool(WORKERS)
    if lib == "PPE":
        return concurrent.futures.ProcessPoolExecutor(WORKERS)
    if lib == "mpire":
        return mpire.WorkerPool(n_jobs=WORKERS, keep_alive=True)
    return loky.ProcessPoolExecutor(max_workers=WORKERS)


def stop(lib, pool):
    if lib == "multicore":
        multicore.shutdown()
    elif lib == "mpire":
        pool.terminate()
    elif lib == "mp.Pool":
        pool.terminate()
        pool.join()
    else:
        pool.shutdown(wait=True)


def call(lib, pool, fn, *args):
    """One round trip: submit one call and wait for its result."""
    if lib == "multicore":
        t = Task()
        t.run(fn, *args)
        return t.get()[0]
    if lib == "mp.Pool":
        return pool.apply_async(fn, args).get()
    return pool.submit(fn, *args).result()


def call_each(lib, pool, fn, arglists):
    """Submits one call per argument tuple, then collects every result in order."""
    if lib == "multicore":
        t = Task()
        for args in arglists:
            t.run(fn, *args)
        return t.get()
    if lib == "mp.Pool":
        pending = [pool.apply_async(fn, args) for args in arglists]
        return [p.get() for p in pending]
    futures = [pool.submit(fn, *args) for args in arglists]
    return [f.result() for f in futures]


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# --- the measurements: each fills results[key][lib] with one value per round -----------------------


def add(results, key, lib, value):
    results.setdefault(key, {}).setdefault(lib, []).append(value)


def bench_roundtrip(pools, s, results):
    for r in range(s.rt_rounds):
        for lib in rotated(LIBS, r):
            pool = pools[lib]
            for i in range(s.rt_warmup):
                call(lib, pool, tiny, i)
            samples = []
            clock = time.perf_counter_ns
            for i in range(s.rt_calls):
                t0 = clock()
                call(lib, pool, tiny, i)
                samples.append(clock() - t0)
            add(results, "rt_median", lib, median(samples) / 1e3)
            add(results, "rt_p99", lib, percentile(samples, 0.99) / 1e3)


def bench_many(pools, s, results):
    n = s.many_calls
    expected = list(range(n))
    arglists = [(i,) for i in range(n)]
    chunksize = math.ceil(n / (4 * WORKERS))  # Pool.map's own default, used for executor.map too
    spans = list(ranges(range(n), number_of_workers=WORKERS))
    for r in range(s.many_rounds):
        for lib in rotated(LIBS, r):
            pool = pools[lib]
            # Each lambda runs within this iteration; the defaults only pin that down for readers.
            runs = {
                "each": lambda lib=lib, pool=pool: call_each(lib, pool, tiny, arglists),
                "ranges": lambda lib=lib, pool=pool: [
                    x for part in call_each(lib, pool, tiny_range, spans) for x in part
                ],
                "map": lambda lib=lib, pool=pool: lib_map(lib, pool, tiny, expected, chunksize),
            }
            for name, run in runs.items():
                seconds, out = timed(run)
                assert out == expected, f"{lib} {name} returned wrong results"
                add(results, f"many_{name}", lib, n / seconds)
        # mpire only in the map comparisons: its own batching is what it is for.
        seconds, out = timed(lib_map, "mpire", pools["mpire"], tiny, expected, chunksize)
        assert out == expected, "mpire map returned wrong results"
        add(results, "many_map", "mpire", n / seconds)
    return chunksize


def lib_map(lib, pool, fn, items, chunksize):
    """Each library's own map with its automatic chunking (executors have none: Pool.map's rule)."""
    if lib == "multicore":
        return Task().map(fn, items)
    if lib == "mp.Pool":
        return pool.map(fn, items)
    if lib == "mpire":
        return pool.map(fn, items)
    return list(pool.map(fn, items, chunksize=chunksize))


def bench_echo(pools, s, results):
    block = os.urandom(1 << 20)
    for size, calls in s.echo_sizes:
        payload = block * (size >> 20)
        for r in range(s.echo_rounds):
            for lib in rotated(LIBS, r):
                pool = pools[lib]
                assert call(lib, pool, echo, payload) == payload, f"{lib} echoed wrong bytes"  # warm-up
                times = [timed(call, lib, pool, echo, payload)[0] for _ in range(calls)]
                add(results, f"echo_{size}", lib, 2 * size / median(times) / 1e9)


def calibrate(seconds):
    n = 200_000
    while True:
        t, _ = timed(burn, n)
        if t > 0.05:
            return max(1, int(n * seconds / t))
        n *= 4


def bare_fork(arglists):
    """The machine's own ceiling: plain forked children run the chunks, nothing is sent back."""
    pids = []
    for w in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            for args in arglists[w::WORKERS]:
                burn(*args)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def bench_cpu(pools, s, results):
    n = calibrate(s.cpu_chunk_s)
    arglists = [(n,)] * s.cpu_chunks
    expected = [burn(n)] * s.cpu_chunks
    for r in range(s.cpu_rounds):
        for lib in rotated(("sequential", "bare fork", *LIBS), r):
            if lib == "sequential":
                seconds, out = timed(lambda: [burn(*a) for a in arglists])
            elif lib == "bare fork":
                seconds, out = timed(bare_fork, arglists)[0], expected
            else:
                seconds, out = timed(call_each, lib, pools[lib], burn, arglists)
            assert out == expected, f"{lib} returned wrong sums"
            add(results, "cpu_s", lib, seconds)
        for lib in rotated((*LIBS, "mpire"), r):
            seconds, out = timed(lib_map, lib, pools[lib], burn, [n] * s.cpu_chunks, 1)
            assert out == expected, f"{lib} map returned wrong sums"
            add(results, "cpu_map_s", lib, seconds)
    seq = results["cpu_s"].pop("sequential")
    for lib in (*LIBS, "bare fork"):
        results.setdefault("cpu_speedup", {})[lib] = [q / t for q, t in zip(seq, results["cpu_s"][lib], strict=False)]
    return median(seq) / s.cpu_chunks


def bench_start(s, results):
    for r in range(s.start_rounds):
        for lib in rotated(LIBS, r):
            t0 = time.perf_counter()
            pool = start(lib)
            assert call(lib, pool, tiny, 7) == 7
            add(results, "start_ms", lib, (time.perf_counter() - t0) * 1e3)
            stop(lib, pool)


def pool_pids(lib, deadline=5.0):
    """The processes of the running pool, once all of them exist."""
    until = time.monotonic() + deadline
    while True:
        if lib == "multicore":
            info = multicore.pool_info()
            pids = [w["pid"] for w in info["workers"] if w["pid"]] + [info["supervisor_pid"] or None]
            pids = [p for p in pids if p]
            complete = len(pids) == WORKERS + 1
        else:
            pids = descendants(os.getpid())
            complete = len(pids) >= WORKERS
        if complete or time.monotonic() > until:
            return pids
        time.sleep(0.01)


def bench_idle(s, results):
    for lib in LIBS:
        pool = start(lib)
        # Every worker has started and served a call (each nap holds one worker), then silence.
        busy = set(call_each(lib, pool, nap, [(0.05,)] * (4 * WORKERS)))
        pids = pool_pids(lib)
        assert busy <= set(pids), f"{lib}: a worker outside the measured processes served a call"
        me = os.getpid()
        # The parent is read last before and first after the sleep, so its figure holds only the
        # sleep (and its helper threads), not our own /proc reading.
        ticks0, ns0 = sum(cpu_ticks(p) for p in pids), sum(cpu_ns(p) for p in pids)
        parent0 = cpu_ns(me)
        time.sleep(s.idle_s)
        parent1 = cpu_ns(me)
        ticks1, ns1 = sum(cpu_ticks(p) for p in pids), sum(cpu_ns(p) for p in pids)
        add(results, "idle_ticks_ms", lib, (ticks1 - ticks0) * 1000 / TICK)
        add(results, "idle_ns_ms", lib, (ns1 - ns0) / 1e6)
        add(results, "idle_parent_ms", lib, (parent1 - parent0) / 1e6)
        add(results, "idle_procs", lib, len(pids))
        stop(lib, pool)


RSS_LIBS = ("multicore", "mp.Pool", "loky")


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def rss_child(lib, payload_mb, rest_s):
    """In a fresh interpreter (so the parent's figure is the pool's alone): RSS of the parent and
    of its largest worker, warm, right after a payload_mb echo on each worker, and after rest_s."""
    pool = start(lib)
    for i in range(200):
        call(lib, pool, tiny, i)
    pids = pool_pids(lib)
    if lib == "multicore":
        pids = [w["pid"] for w in multicore.pool_info()["workers"]]  # not the supervisor

    def reading():
        return [rss_mb(os.getpid()), max(rss_mb(p) for p in pids)]

    warm = reading()
    payload = os.urandom(1 << 20) * payload_mb
    for _ in range(2):  # two calls at once, so that both workers most likely echo one
        out = call_each(lib, pool, echo, [(payload,), (payload,)])
        assert out == [payload, payload], f"{lib} echoed wrong bytes"
        del out
    del payload
    after = reading()
    time.sleep(rest_s)
    rest = reading()
    stop(lib, pool)
    print(json.dumps({"warm": warm, "after": after, "rest": rest}))


def bench_rss(s, results):
    for lib in RSS_LIBS:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--rss-child", lib, str(s.rss_payload_mb), str(s.rss_rest_s)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"RSS run of {lib} failed:\n{proc.stderr}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        for phase in ("warm", "after", "rest"):
            add(results, f"rss_parent_{phase}", lib, data[phase][0])
            add(results, f"rss_worker_{phase}", lib, data[phase][1])


# --- report -------------------------------------------------------------------------------------


def fmt(value, digits):
    return f"{value:,.{digits}f}"


def cell(values, digits):
    if not values:
        return "—"
    text = fmt(median(values), digits)
    if len(values) > 1 and fmt(min(values), digits) != fmt(max(values), digits):
        text += f" [{fmt(min(values), digits)}–{fmt(max(values), digits)}]"
    return text


def table(results, rows, libs=LIBS):
    """rows: (label, key, digits, higher_is_better or None for no ratios[, key for multicore's value])."""
    peers = libs[1:]
    head = "| measurement | " + " | ".join(libs) + " | " + " | ".join(f"multicore vs {p}" for p in peers) + " |"
    lines = [head, "|" + "---|" * (1 + len(libs) + len(peers))]
    for label, key, digits, higher, *mc_key in rows:
        data = results.get(key, {})
        mc = results.get(mc_key[0] if mc_key else key, {}).get("multicore")
        ratios = []
        for peer in peers:
            a, b = (median(mc) if mc else 0), (median(data[peer]) if data.get(peer) else 0)
            if higher is None or not a or not b:
                ratios.append("—")
                continue
            ratios.append(f"{(a / b if higher else b / a):.2f}x")
        lines.append(
            f"| {label} | "
            + " | ".join(cell(data.get(lib), digits) for lib in libs)
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


def verdict(ok, text):
    return f"{'**met**' if ok else '**missed**'} — {text}"


def targets(results, n):
    def m(key, lib="multicore"):
        return median(results[key][lib])

    rt, rt_pool = m("rt_median"), m("rt_median", "mp.Pool")
    each, each_pool = m("many_each"), m("many_each", "mp.Pool")
    split, pool_map = m("many_ranges"), m("many_map", "mp.Pool")
    big = max((k for k in results if k.startswith("echo_")), key=lambda k: int(k[5:]))
    gbs = m(big)
    speedup, ceiling = m("cpu_speedup"), m("cpu_speedup", "bare fork")
    idle = m("idle_ticks_ms")
    idle_ns = m("idle_ns_ms")
    task_map, cpu_map, cpu_pool_map = m("many_map"), m("cpu_map_s"), m("cpu_map_s", "mp.Pool")
    rest = max(m(f"rss_{who}_rest") - m(f"rss_{who}_warm") for who in ("parent", "worker"))
    echo_mb = int(big[5:]) >> 20
    rows = [
        (
            "(a) round trip median ≤ 10 µs",
            f"{rt:.1f} µs",
            verdict(rt <= 10, f"{10 / rt:.2f}x headroom" if rt <= 10 else f"{rt - 10:.1f} µs over"),
        ),
        (
            "(a) ≥ 10x faster than Pool.apply_async().get()",
            f"{rt_pool / rt:.1f}x",
            verdict(rt_pool / rt >= 10, f"{rt_pool / rt / 10:.2f} of the target"),
        ),
        (
            f"(b) {n:,} calls in one Task ≥ 5x {n:,} apply_async",
            f"{each / each_pool:.1f}x",
            verdict(each / each_pool >= 5, f"{each / each_pool / 5:.2f} of the target"),
        ),
        (
            "(b) ranges() split ≥ Pool.map",
            f"{split / pool_map:.2f}x",
            verdict(split >= pool_map, f"{split:,.0f} vs {pool_map:,.0f} calls/s"),
        ),
        (
            "(d) 8 CPU-bound chunks ≥ 1.9x",
            f"{speedup:.2f}x",
            verdict(speedup >= 1.9, f"{speedup / 1.9:.2f} of the target; bare fork: {ceiling:.2f}x"),
        ),
        (
            f"(b) Task.map ≥ Pool.map on {n:,} tiny calls",
            f"{task_map / pool_map:.2f}x",
            verdict(task_map >= pool_map, f"{task_map:,.0f} vs {pool_map:,.0f} calls/s"),
        ),
        (
            "(d) Task.map ≥ Pool.map on 8 CPU-bound chunks",
            f"{cpu_pool_map / cpu_map:.2f}x",
            verdict(cpu_map <= cpu_pool_map, f"{cpu_map:.2f} s vs {cpu_pool_map:.2f} s"),
        ),
        (
            "(g) at rest within 10 MB of warm RSS after large echoes",
            f"+{rest:.1f} MB",
            verdict(rest <= 10, "largest growth of the parent or a worker, warm → after the rest"),
        ),
        (
            "(c) 100 MB echo throughput kept (≥ 1.1 GB/s)" if echo_mb == 100 else f"(c) {echo_mb} MB echo ≥ 1.1 GB/s",
            f"{gbs:.2f} GB/s",
            verdict(gbs >= 1.1, f"{gbs / 1.1:.2f} of the target"),
        ),
        (
            "(f) idle workers + supervisor use no CPU",
            f"{idle:.0f} ms ({idle_ns:.2f} ms schedstat)",
            verdict(idle <= 1000 / TICK, "at most one clock tick in the idle window"),
        ),
    ]
    lines = ["| target | multicore | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def section(title, s, fn, *args):
    waited = wait_quiet(s.quiet_wait_s) if s.quiet_wait_s else 0.0
    progress(f"{title} (waited {waited:.1f} s for a quiet machine, load {loadavg()})")
    with Noise() as noise:
        out = fn(*args)
    return out, f"other processes used {noise.foreign_pct:.0f}% of the machine meanwhile, steal {noise.steal_pct:.0f}%"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (CI); figures are not measurements")
    parser.add_argument("--rss-child", nargs=3, metavar=("LIB", "MB", "REST_S"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        lib, mb, rest_s = args.rss_child
        return rss_child(lib, int(mb), float(rest_s))
    s = QUICK if args.quick else Settings()
    machine = machine_line()
    results, notes = {}, {}
    pools = {lib: start(lib) for lib in (*LIBS, "mpire")}  # multicore first: the peers' forks drop its handle
    try:
        for lib in LIBS:
            call(lib, pools[lib], tiny, 0)
        pools["mpire"].map(tiny, range(4))
        _, notes["a"] = section("(a) round trip", s, bench_roundtrip, pools, s, results)
        chunksize, notes["b"] = section("(b) many tiny calls", s, bench_many, pools, s, results)
        _, notes["c"] = section("(c) echo", s, bench_echo, pools, s, results)
        chunk_s, notes["d"] = section("(d) CPU-bound", s, bench_cpu, pools, s, results)
    finally:
        for lib in (*LIBS, "mpire"):
            stop(lib, pools[lib])
    _, notes["e"] = section("(e) start", s, bench_start, s, results)
    _, notes["f"] = section("(f) idle", s, bench_idle, s, results)
    _, notes["g"] = section("(g) memory", s, bench_rss, s, results)

    n = s.many_calls
    echo_rows = [(f"{size >> 20} MB echoed, GB/s (both ways)", f"echo_{size}", 2, True) for size, _ in s.echo_sizes]
    out = [
        f"**Machine:** {machine}, load average at end {loadavg()}.",
        "",
        f"**Command:** `python benchmarks/core.py{' --quick' if s is QUICK else ''}`"
        + (" (QUICK SMOKE RUN: not a measurement)" if s is QUICK else ""),
        "",
        "Cells: median over rounds [min–max of the per-round figures]. Ratios: how many times better "
        "multicore is (> 1 = multicore wins).",
        "",
        f"### (a) Round trip of one tiny call, µs ({s.rt_rounds} rounds × {s.rt_calls} calls after {s.rt_warmup} warm-up)",
        table(results, [("median", "rt_median", 1, False), ("p99", "rt_p99", 1, False)]),
        f"\n{notes['a']}.",
        f"\n### (b) {n:,} tiny calls, calls/s ({s.many_rounds} rounds)",
        table(
            results,
            [
                ("one call each: Task.run / apply_async / submit", "many_each", 0, True),
                (f"ranges() split: {WORKERS} calls of {n // WORKERS:,} items", "many_ranges", 0, True),
            ],
        ),
        f"\nEach library's map with its own automatic chunking (Task.map: {auto_chunksize(n, WORKERS):,} items a "
        f"call; Pool.map: {chunksize:,}; executor.map has none, so it gets Pool.map's chunksize={chunksize}; "
        "mpire's WorkerPool.map picks its own):\n",
        table(results, [(f"map(tiny, {n:,} items), calls/s", "many_map", 0, True)], (*LIBS, "mpire")),
        f"\n{notes['b']}.",
        f"\n### (c) Bytes echoed (the function returns its argument), GB/s counting both ways ({s.echo_rounds} rounds)",
        table(results, echo_rows),
        f"\n{notes['c']}.",
        f"\n### (d) {s.cpu_chunks} CPU-bound chunks of {chunk_s:.2f} s each ({s.cpu_rounds} rounds)",
        table(
            results,
            [
                ("wall time, s (one call per chunk)", "cpu_s", 2, False),
                ("speedup over sequential", "cpu_speedup", 2, True),
            ],
        ),
        "\nThe same chunks through each library's map (Task.map, Pool.map, executor.map, mpire's map; chunksize 1):\n",
        table(results, [("map wall time, s", "cpu_map_s", 2, False)], (*LIBS, "mpire")),
        f"\nThe machine's ceiling, {WORKERS} bare `os.fork()` children running the same chunks (no pool, no "
        f"results sent back): speedup {cell(results['cpu_speedup']['bare fork'], 2)}. {notes['d']}.",
        f"\n### (e) Pool start to first result, ms ({s.start_rounds} starts each)",
        table(results, [("create pool + first round trip", "start_ms", 1, False)]),
        f"\n{notes['e']}.",
        f"\n### (f) CPU used by an idle pool in {s.idle_s:.0f} s, ms",
        table(
            results,
            [
                ("pool processes, /proc/<pid>/stat utime+stime", "idle_ticks_ms", 0, None),
                ("pool processes, schedstat (ns resolution)", "idle_ns_ms", 2, None),
                ("parent process (its helper threads)", "idle_parent_ms", 2, None),
                ("processes measured", "idle_procs", 0, None),
            ],
        ),
        f"\n{notes['f']}.",
        f"\n### (g) Resident memory (VmRSS), MB: warm, right after echoing {s.rss_payload_mb} MB on each worker, "
        f"and after {s.rss_rest_s:g} s at rest",
        "\nEach library in a fresh interpreter, so the parent's figure is its pool's alone. Worker: the largest.\n",
        table(
            results,
            [
                ("parent, warm", "rss_parent_warm", 1, False),
                ("parent, right after", "rss_parent_after", 1, False),
                (f"parent, after {s.rss_rest_s:g} s at rest", "rss_parent_rest", 1, False),
                ("worker, warm", "rss_worker_warm", 1, False),
                ("worker, right after", "rss_worker_after", 1, False),
                (f"worker, after {s.rss_rest_s:g} s at rest", "rss_worker_rest", 1, False),
            ],
            RSS_LIBS,
        ),
        f"\n{notes['g']}.",
        "\n### Targets",
        targets(results, n),
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
