"""Benchmark of multicore.batch on the example project's backfill (catalog-quality).

    python benchmarks/batch.py [--products 100000] [--rounds 700] [--postgres] [--quick]

Seeds a fresh example database (SQLite in a temporary directory, or with --postgres a database
of its own on 127.0.0.1:5432), then fills ``Product.quality`` (about 0.2 ms of Python per row with
the default --rounds) in one run each way, resetting the column in between:

* sequential: one loop in one process over the same primary-key chunks;
* run_batch: the BatchJob's ``process`` through ``run_batch`` on 2 workers, with the ledger (a
  named job) and without it (``name=None``);
* --cluster=k/N: N ``manage.py``-style processes, each taking its OFFSET slice of the rows (the
  hand-rolled approach the batch module replaces);
* multiprocessing.Pool(N).imap over the same primary-key chunks (fork; the parent closes its
  database connection first so the children do not share it).

Prints a Markdown table (seconds, speed-up over sequential, the ledger's cost against
name=None) and the parent's and workers' resident memory at the start and end of the run_batch
run. Run it alone on the machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
# This directory has an http.py, which must not shadow the standard library's.
sys.path = [str(EXAMPLE), str(ROOT)] + [
    p for p in sys.path if p and Path(p).resolve() != Path(__file__).resolve().parent
]

WORKERS = 2
CHUNK = 1000


def _setup(args: argparse.Namespace) -> dict[str, str]:
    env = {"DJANGO_SETTINGS_MODULE": "exampleproject.settings", "CATALOG_QUALITY_ROUNDS": str(args.rounds)}
    if args.postgres:
        import psycopg

        name = f"multicore_batch_bench_{os.getpid()}"
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        env["DATABASE_URL"] = f"postgres://root@127.0.0.1:5432/{name}"
    else:
        env["EXAMPLE_SQLITE_NAME"] = os.path.join(tempfile.mkdtemp(prefix="multicore-batch-bench-"), "bench.sqlite3")
    os.environ.update(env)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed", products=args.products, verbosity=0)
    return env


def _reset() -> None:
    from catalog.models import Product
    from django.db import connections

    Product.objects.update(quality=None)
    connections.close_all()


def _check(products: int) -> None:
    from catalog.models import Product

    missing = Product.objects.filter(quality__isnull=True).count()
    assert missing == 0, f"{missing} products were not backfilled"
    assert Product.objects.count() == products


def _rss(pid: int) -> int:
    from multicore import _core

    return _core.rss_bytes(pid)


# -- the ways of running it ---------------------------------------------------------------------------


def sequential() -> None:
    from catalog.batches import BackfillQuality

    from multicore.batch import plan

    job = BackfillQuality()
    queryset = job.get_queryset()
    for lo, hi in plan.plan(queryset, CHUNK):
        chunk = queryset.order_by("pk")
        chunk = chunk.filter(pk__gte=lo) if lo is not None else chunk
        chunk = chunk.filter(pk__lt=hi) if hi is not None else chunk
        job.process(chunk)


def with_run_batch(name: str | None, memory: dict | None = None) -> None:
    from catalog.batches import BackfillQuality

    from multicore import pool_info
    from multicore.batch import run_batch

    def watch(event) -> None:
        if memory is not None:
            workers = {w["pid"]: _rss(w["pid"]) for w in pool_info()["workers"] if w["pid"]}
            memory.setdefault("workers_first", workers)
            memory["workers_last"] = workers
            memory["parent_peak"] = max(memory.get("parent_peak", 0), _rss(os.getpid()))

    job = BackfillQuality()
    report = run_batch(
        job.get_queryset(), job.process, name=name, chunk_size=CHUNK, atomic=job.atomic, progress=watch, restart=True
    )
    assert report.failed == 0 and report.done == report.total, report


def _imap_chunk(bounds) -> int:
    from catalog.batches import BackfillQuality

    job = BackfillQuality()
    lo, hi = bounds
    chunk = job.get_queryset().order_by("pk")
    chunk = chunk.filter(pk__gte=lo) if lo is not None else chunk
    chunk = chunk.filter(pk__lt=hi) if hi is not None else chunk
    return job.process(chunk)


def with_pool_imap() -> None:
    import multiprocessing

    from catalog.batches import BackfillQuality
    from django.db import connections

    from multicore.batch import plan

    bounds = plan.plan(BackfillQuality().get_queryset(), CHUNK)
    connections.close_all()  # the forked children must not share the parent's connection
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        for _ in pool.imap(_imap_chunk, bounds):
            pass


def cluster_slice(k: int, n: int) -> None:
    """One process of the --cluster=k/N approach: its OFFSET slice, in batches of CHUNK rows."""
    from catalog.batches import BackfillQuality
    from catalog.models import Product

    job = BackfillQuality()
    total = Product.objects.count()
    start, end = total * k // n, total * (k + 1) // n
    ordered = Product.objects.order_by("pk")
    for offset in range(start, end, CHUNK):
        ids = list(ordered.values_list("pk", flat=True)[offset : min(offset + CHUNK, end)])
        job.process(Product.objects.filter(pk__in=ids))


def with_clusters(env: dict[str, str]) -> None:
    procs = [
        subprocess.Popen([sys.executable, __file__, "--cluster", f"{k}/{WORKERS}"], env={**os.environ, **env})
        for k in range(WORKERS)
    ]
    for proc in procs:
        assert proc.wait() == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=700, help="hash rounds per row (700: about 0.2 ms)")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2,000 products: a smoke run, not a measurement")
    parser.add_argument("--cluster", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cluster:
        import django

        django.setup()
        k, n = map(int, args.cluster.split("/"))
        cluster_slice(k, n)
        return
    if args.quick:
        args.products = 2000
    env = _setup(args)
    import multicore

    multicore.initialize(workers=WORKERS)
    multicore.warm_up()
    memory: dict = {}
    parent_start = _rss(os.getpid())
    runs = [
        ("sequential loop (1 process)", sequential),
        ("run_batch, name=None", lambda: with_run_batch(None)),
        ("run_batch, named (ledger)", lambda: with_run_batch("bench", memory)),
        (f"{WORKERS} processes, --cluster=k/{WORKERS} OFFSET slices", lambda: with_clusters(env)),
        (f"multiprocessing.Pool({WORKERS}).imap over pk chunks", with_pool_imap),
    ]
    times = {}
    for label, fn in runs:
        _reset()
        started = time.perf_counter()
        fn()
        times[label] = time.perf_counter() - started
        _check(args.products)
        print(f"# {label}: {times[label]:.2f}s", file=sys.stderr, flush=True)
    base = times["sequential loop (1 process)"]
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{args.products:,} products, --rounds {args.rounds}, {database}, {WORKERS} workers, chunks of {CHUNK}\n")
    print("| approach | seconds | vs sequential |")
    print("|---|---:|---:|")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.2f} | {base / seconds:.2f}x |")
    unnamed, named = times["run_batch, name=None"], times["run_batch, named (ledger)"]
    print(f"\nledger cost: {100 * (named - unnamed) / unnamed:+.1f}% (named against name=None)")
    mb = 1024 * 1024
    first, last = memory.get("workers_first", {}), memory.get("workers_last", {})
    print(
        f"parent RSS: {parent_start / mb:.0f} MB before, peak {memory.get('parent_peak', 0) / mb:.0f} MB during the named run"
    )
    print(
        "worker RSS (first event -> last event): "
        + ", ".join(f"pid {pid}: {first[pid] / mb:.0f} -> {last.get(pid, 0) / mb:.0f} MB" for pid in first)
    )
    multicore.shutdown()


if __name__ == "__main__":
    main()
