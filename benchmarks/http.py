"""End-to-end HTTP benchmark: the example project under gunicorn, DRF list patch on vs off.

    python benchmarks/http.py                    # SQLite and PostgreSQL, prints Markdown tables
    python benchmarks/http.py --db sqlite --write /tmp/http-report.md

Two gunicorn servers run side by side on 127.0.0.1 (2 sync workers each, the recommended
configuration in docs/gunicorn.md; every server: benchmarks/servers.py): one with ``MULTICORE_DRF_PATCH=1``, one with ``=0``. The
endpoint is ``/api/products/?limit=N``: a hyperlinked serializer with about 0.3 ms of pure-Python
work per row (example_project/catalog/analysis.py).

* One client: requests alternate between the two servers, so both see the same machine load;
  p50/p95 latency at each size.
* Four concurrent clients (the cores already busy): a fixed number of requests per client,
  against one server at a time; throughput in requests per second.

Before each size the benchmark waits (at most 30 s) for an idle machine, and it reports the CPU
other processes used meanwhile (the PostgreSQL backends serving it count as its own): on a
shared machine that column says which figures to trust. Every loop is bounded (fixed request
counts, per-request timeouts); loopback only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file is named like the stdlib's http package: keep its directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT / "example_project"), str(ROOT)]

import runner  # noqa: E402

from benchmarks._util import Noise, machine_line, wait_quiet  # noqa: E402

PG_URL = "postgres://root@127.0.0.1:5432/multicore_bench"
SIZES = (10, 100, 1000, 3000, 5000)
LIGHT_SIZES = (10, 20, 50, 100, 200, 500, 1000, 3000)
SINGLE_CLIENT_REQUESTS = {10: 60, 20: 60, 50: 50, 100: 40, 200: 30, 500: 20, 1000: 15, 3000: 8, 5000: 6}
ENDPOINTS = {"products": "/api/products/", "light": "/api/products-light/"}
# Rounds alternate plain and patched; one round's throughput moves by up to 30% on a shared VM.
CONCURRENT = {"clients": 4, "requests_per_client": {100: 15, 1000: 4}, "rounds": 7}
QUIET_WAIT = 30  # seconds, at most, waited before each size for the machine to be idle


class Engagement:
    """Counts, from the patched server's DEBUG log, how many lists the pool served."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0

    def since_last(self) -> tuple[int, int]:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        return text.count(b"served in parallel"), text.count(b"served sequentially")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ensure_pg_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'multicore_bench'").fetchone():
            conn.execute("CREATE DATABASE multicore_bench")


def environment(db: str, workdir: Path) -> dict[str, str]:
    if db == "postgres":
        ensure_pg_database()
        env = runner.project_env(DATABASE_URL=PG_URL)
    else:
        env = runner.project_env(EXAMPLE_SQLITE_NAME=str(workdir / "bench.sqlite3"))
        env.pop("DATABASE_URL", None)
    runner.prepare_database(env, products=6000)
    return env


ENDPOINT = ENDPOINTS["products"]


def path(rows: int) -> str:
    return f"{ENDPOINT}?limit={rows}"


def checked(server: runner.Gunicorn, url: str) -> float:
    status, body, seconds = server.request(url, timeout=120)
    if status != 200:
        raise RuntimeError(f"GET {url} answered {status}: {body[:300]!r}")
    return seconds


def backends(db: str):
    """The pids of the PostgreSQL backends serving the benchmark's database (their CPU is ours)."""
    if db != "postgres":
        return list
    import psycopg

    def pids() -> list[int]:
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", connect_timeout=5) as conn:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = 'multicore_bench'"
            return [pid for (pid,) in conn.execute(query).fetchall()]

    return pids


def single_client(patched: runner.Gunicorn, plain: runner.Gunicorn, engaged: Engagement, sizes, db: str) -> list[dict]:
    results = []
    for rows in sizes:
        url = path(rows)
        for server in (patched, plain):  # warm caches and connections
            checked(server, url)
        # The machine is shared: start each size on a quiet one, and report what else ran.
        wait_quiet(QUIET_WAIT)
        times: dict[str, list[float]] = {"patched": [], "plain": []}
        with Noise(also=backends(db)) as noise:
            for i in range(SINGLE_CLIENT_REQUESTS.get(rows, 40)):
                order = [("patched", patched), ("plain", plain)]
                for name, server in order if i % 2 == 0 else order[::-1]:
                    times[name].append(checked(server, url))
        row = {
            "rows": rows,
            "parallel": "{}/{}".format(*_share(engaged.since_last())),
            "others": noise.foreign_pct,
        }
        for name, values in times.items():
            row[f"{name}_p50"] = statistics.median(values) * 1000
            row[f"{name}_p95"] = percentile(values, 0.95) * 1000
        row["speedup"] = row["plain_p50"] / row["patched_p50"]
        # Each iteration's two requests ran back to back: their ratio sees the same machine speed,
        # which on a shared VM drifts from one second to the next by more than the patch changes.
        pairs = [plain / fast for fast, plain in zip(times["patched"], times["plain"], strict=True)]
        row["paired"] = statistics.median(pairs)
        row["paired_iqr"] = (percentile(pairs, 0.25), percentile(pairs, 0.75))
        results.append(row)
        print(
            f"  {rows:>5} rows: patched p50 {row['patched_p50']:.1f} ms, unpatched {row['plain_p50']:.1f} ms "
            f"({row['speedup']:.2f}x, paired {row['paired']:.2f}x; parallel {row['parallel']}; "
            f"other processes {row['others']:.0f}%)",
            flush=True,
        )
    return results


def _share(counts: tuple[int, int]) -> tuple[int, int]:
    parallel, sequential = counts
    return parallel, parallel + sequential


def throughput(server: runner.Gunicorn, rows: int) -> float:
    count = CONCURRENT["requests_per_client"][rows]
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(count):
                checked(server, path(rows))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CONCURRENT["clients"])]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    elapsed = time.perf_counter() - began
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError(f"concurrent clients failed: {errors[:1]}")
    return CONCURRENT["clients"] * count / elapsed


def concurrent_clients(patched: runner.Gunicorn, plain: runner.Gunicorn, engaged: Engagement, db: str) -> list[dict]:
    results = []
    for rows in CONCURRENT["requests_per_client"]:
        engaged.since_last()
        wait_quiet(QUIET_WAIT)
        # plain, patched, plain, patched...: both see the same drift in machine load.
        rps = {"patched": [], "plain": []}
        with Noise(also=backends(db)) as noise:
            for name, server in (("plain", plain), ("patched", patched)) * CONCURRENT["rounds"]:
                rps[name].append(throughput(server, rows))
        row = {
            "rows": rows,
            "patched_rps": statistics.median(rps["patched"]),
            "plain_rps": statistics.median(rps["plain"]),
            "others": noise.foreign_pct,
        }
        row["ratio"] = row["patched_rps"] / row["plain_rps"]
        # Each patched round against the plain round just before it (the same machine speed).
        row["paired"] = statistics.median(
            [fast / plain for plain, fast in zip(rps["plain"], rps["patched"], strict=True)]
        )
        row["parallel"] = "{}/{}".format(*_share(engaged.since_last()))
        results.append(row)
        print(
            f"  {rows:>5} rows, 4 clients: patched {row['patched_rps']:.2f} req/s, unpatched "
            f"{row['plain_rps']:.2f} req/s ({row['ratio']:.2f}x, paired {row['paired']:.2f}x; parallel {row['parallel']}; "
            f"other processes {row['others']:.0f}%)",
            flush=True,
        )
    return results


def run(db: str, workdir: Path, min_idle_cpus: int, sizes, concurrent: bool) -> tuple[list[dict], list[dict]]:
    env = environment(db, workdir)
    log = workdir / f"gunicorn-{db}-patched.log"
    patched_env = {
        **env,
        "MULTICORE_DRF_PATCH": "1",
        "MULTICORE_LOG_LEVEL": "DEBUG",
        "MULTICORE_MIN_IDLE_CPUS": str(min_idle_cpus),
    }
    with (
        runner.Gunicorn(patched_env, workers=2, timeout=120, log_file=str(log)) as patched,
        runner.Gunicorn(
            {**env, "MULTICORE_DRF_PATCH": "0"},
            workers=2,
            timeout=120,
            log_file=str(workdir / f"gunicorn-{db}-plain.log"),
        ) as plain,
    ):
        engaged = Engagement(log)
        engaged.since_last()
        print(f"{db}: one client (load average {load()})", flush=True)
        single = single_client(patched, plain, engaged, sizes, db)
        if concurrent:
            print(f"{db}: four concurrent clients (load average {load()})", flush=True)
        concurrent = concurrent_clients(patched, plain, engaged, db) if concurrent else []
        print(f"{db}: done (load average {load()})", flush=True)
        if not any(patched.json("/pool/")["tasks_done"] > 0 for _ in range(8)):
            raise RuntimeError("the patched server never used its pool: the patch did not engage")
    return single, concurrent


def markdown(all_results: dict[str, tuple[list[dict], list[dict]]], min_idle_cpus: int, endpoint: str) -> str:
    work = "~0.3 ms" if endpoint == "products" else "~0.05 ms"
    lines = [
        "## HTTP: DRF list endpoint under gunicorn (benchmarks/http.py)",
        "",
        f"Machine: {machine_line()}; gunicorn 2 sync workers per server, 2 multicore workers per "
        f"gunicorn worker; `{ENDPOINTS[endpoint]}?limit=N`, {work} of Python per row; client on 127.0.0.1; "
        f'busy-CPU guard `multicore_min_idle_cpus = {min_idle_cpus}`. "Served in parallel" counts the '
        'patched server\'s requests that the pool served (the rest fell back); "paired" is the median '
        'of each back-to-back pair\'s ratio; "other processes" is the '
        "CPU other programs used meanwhile, in % of the machine (the database server's backends serving "
        "the benchmark count as its own).",
        "",
    ]
    for db, (single, concurrent) in all_results.items():
        lines += [
            f"### {db}: one client (latency, ms)",
            "",
            "| rows | patched p50 | patched p95 | unpatched p50 | unpatched p95 | speed-up (p50) "
            "| paired speed-up (median, quartiles) | served in parallel | other processes |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['rows']:,} | {r['patched_p50']:.1f} | {r['patched_p95']:.1f} | {r['plain_p50']:.1f} | "
            f"{r['plain_p95']:.1f} | {r['speedup']:.2f}x | {r['paired']:.2f}x ({r['paired_iqr'][0]:.2f}-"
            f"{r['paired_iqr'][1]:.2f}) | {r['parallel']} | {r['others']:.0f}% |"
            for r in single
        ]
        if not concurrent:
            lines.append("")
            continue
        lines += [
            "",
            f"### {db}: four concurrent clients (throughput)",
            "",
            "| rows | patched req/s | unpatched req/s | patched / unpatched | paired (median of rounds) "
            "| served in parallel | other processes |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['rows']:,} | {r['patched_rps']:.2f} | {r['plain_rps']:.2f} | {r['ratio']:.2f} | {r['paired']:.2f} "
            f"| {r['parallel']} "
            f"| {r['others']:.0f}% |"
            for r in concurrent
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--write", metavar="FILE", help="also write the Markdown tables to FILE")
    parser.add_argument(
        "--endpoint",
        choices=list(ENDPOINTS),
        default="products",
        help="products: ~0.3 ms of Python per row; light: ~0.05 ms per row",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="comma-separated page sizes (default: 10..5000, or 10..3000 with --endpoint light)",
    )
    parser.add_argument("--no-concurrent", action="store_true", help="skip the four-client throughput part")
    parser.add_argument(
        "--min-idle-cpus",
        type=int,
        default=1,
        help="the patched server's busy-CPU guard (multicore_min_idle_cpus; 0 = off)",
    )
    args = parser.parse_args()
    global ENDPOINT
    ENDPOINT = ENDPOINTS[args.endpoint]
    sizes = args.sizes or (LIGHT_SIZES if args.endpoint == "light" else SIZES)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory(prefix="multicore-http-") as tmp:
        results = {db: run(db, Path(tmp), args.min_idle_cpus, sizes, not args.no_concurrent) for db in dbs}
    text = markdown(results, args.min_idle_cpus, args.endpoint)
    print(text)
    if args.write:
        Path(args.write).write_text(text + "\n")


if __name__ == "__main__":
    main()
