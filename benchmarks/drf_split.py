"""The DRF list patch in one process: how a page's split changes the speed-up, and how much the
machine's own speed moves meanwhile.

    python benchmarks/drf_split.py                          # SQLite, 1,000 and 3,000 rows (about 3 minutes)
    python benchmarks/drf_split.py --db postgres --rows 1000 --rotations 24 --minimums 100,40,1000000

No server and no HTTP: Django's test client requests ``/api/products/?limit=N`` of the example
project, unpatched and patched with each ``MIN_RANGE_ROWS`` of ``--minimums`` (a minimum at least
the page size gives one range per worker), in rotating order so each variant sees the same
drift in machine speed. For each variant: the p50, and the median of each request's ratio to the
unpatched request next to it. For the unpatched request, the spread of its own CPU time
(``time.thread_time()``): the same work, so the spread is the machine's (docs/benchmarks.md,
"Why the figures move from run to run").
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/http.py is named like the stdlib's http package: keep this directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT / "example_project"), str(ROOT)]


def setup(db: str, workdir: str) -> None:
    """The example project's database as benchmarks/http.py prepares it (migrate, 6,000 products),
    and Django set up in this process on it."""
    from benchmarks.http import environment

    env = environment(db, Path(workdir))
    os.environ.pop("DATABASE_URL", None)  # SQLite: environment() leaves it out
    os.environ.update(env)
    os.environ.setdefault("MULTICORE_MIN_IDLE_CPUS", "0")  # one client, measured as such
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]


def measure(rows: int, rotations: int, minimums: list[int]) -> str:
    from django.test import Client

    from multicore import drf

    patch_module = importlib.import_module("multicore.drf.patch")  # multicore.drf.patch is the function
    client, url = Client(), f"/api/products/?limit={rows}"
    variants: list[int | None] = [None, *minimums]  # None: unpatched

    def request(minimum: int | None) -> tuple[float, float]:
        if minimum is not None:
            patch_module.MIN_RANGE_ROWS = minimum
            drf.patch()
        try:
            cpu, began = time.thread_time(), time.perf_counter()
            response = client.get(url)
            wall, cpu = time.perf_counter() - began, time.thread_time() - cpu
        finally:
            drf.unpatch()
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}")
        return wall * 1000, cpu * 1000

    default = patch_module.MIN_RANGE_ROWS
    try:
        for minimum in variants:  # warm: the pool, connections, caches
            request(minimum)
        before = dict(drf.stats)
        walls: dict[int | None, list[float]] = {v: [] for v in variants}
        plain_cpu = []
        for turn in range(rotations):
            for minimum in variants[turn % len(variants) :] + variants[: turn % len(variants)]:
                wall, cpu = request(minimum)
                walls[minimum].append(wall)
                if minimum is None:
                    plain_cpu.append(cpu)
        lines = [
            f"{rows:,} rows, {rotations} rotations: unpatched p50 {statistics.median(walls[None]):.0f} ms, "
            f"its CPU time {min(plain_cpu):.0f}-{max(plain_cpu):.0f} ms for the same work"
        ]
        for minimum in minimums:
            patch_module.MIN_RANGE_ROWS = minimum
            sizes = patch_module.range_sizes(rows, 2)
            paired = statistics.median(plain / fast for plain, fast in zip(walls[None], walls[minimum], strict=True))
            lines.append(
                f"  minimum {minimum:>7}: p50 {statistics.median(walls[minimum]):.0f} ms, ratio of p50s "
                f"{statistics.median(walls[None]) / statistics.median(walls[minimum]):.2f}x, paired {paired:.2f}x "
                f"({len(sizes)} ranges: {sizes})"
            )
        served = {k: v - before.get(k, 0) for k, v in drf.stats.items() if v != before.get(k, 0)}
        lines.append(f"  drf.stats: {served}")
        return "\n".join(lines)
    finally:
        patch_module.MIN_RANGE_ROWS = default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", default="1000,3000", help="page sizes, comma-separated (default 1000,3000)")
    parser.add_argument("--rotations", type=int, default=16, help="requests of each variant (default 16)")
    parser.add_argument("--minimums", default="100,40,1000000", help="MIN_RANGE_ROWS variants (default 100,40,1000000)")
    args = parser.parse_args()
    import multicore

    with tempfile.TemporaryDirectory(prefix="multicore-split-") as workdir:
        setup(args.db, workdir)
        try:
            for rows in (int(r) for r in args.rows.split(",")):
                print(measure(rows, args.rotations, [int(m) for m in args.minimums.split(",")]), flush=True)
        finally:
            multicore.shutdown()


if __name__ == "__main__":
    main()
