"""The DRF list patch under every server: gunicorn, uWSGI, Apache mod_wsgi, granian (WSGI, ASGI).

    python benchmarks/servers.py                    # SQLite, prints a Markdown table (about 3 minutes)
    python benchmarks/servers.py --db postgres --write /tmp/servers-report.md

For each server, two instances run the example project side by side on 127.0.0.1, one with the
patch (``MULTICORE_DRF_PATCH=1``) and one without, each with one server worker (on this 2-CPU
machine, 1 server worker x 2 multicore workers = the CPUs: the budget docs/servers.md
recommends). One client alternates requests between the two, so both see the same machine. The
endpoint is ``/api/products/?limit=1000``: a hyperlinked serializer doing about 0.3 ms of
pure-Python work per row. "Served in parallel" comes from the patched server's log.

Every loop is bounded (fixed request counts, per-request timeouts); loopback only; every server
is stopped before the next starts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/http.py is named like the stdlib's http package: keep this directory off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "example_project"))

import runner  # noqa: E402

ROWS = 1000
REQUESTS = 15  # per server, after 2 warm-up requests each
PG_URL = "postgres://root@127.0.0.1:5432/multicore_bench"
SERVERS = [  # (label, runner name, options)
    ("gunicorn (sync)", "gunicorn", {}),
    ("uWSGI (master, no lazy-apps)", "uwsgi", {}),
    ("Apache mod_wsgi (daemon, 15 threads)", "mod_wsgi", {"threads": 15}),
    ("granian (WSGI)", "granian", {"interface": "wsgi"}),
    ("granian (ASGI)", "granian", {"interface": "asgi"}),
]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def environment(db: str, workdir: Path) -> dict[str, str]:
    if db == "postgres":
        import psycopg

        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'multicore_bench'").fetchone():
                c.execute("CREATE DATABASE multicore_bench")
        env = runner.project_env(DATABASE_URL=PG_URL)
    else:
        env = runner.project_env(EXAMPLE_SQLITE_NAME=str(workdir / "bench.sqlite3"))
        env.pop("DATABASE_URL", None)
    runner.prepare_database(env, products=2000)
    if db == "sqlite":
        os.chmod(workdir / "bench.sqlite3", 0o666)  # Apache's daemon processes run as www-data
    return env


def timed(server: runner.Server, url: str) -> float:
    status, body, seconds = server.request(url, timeout=120)
    if status != 200:
        raise RuntimeError(f"{server.name}: GET {url} answered {status}: {body[:300]!r}")
    return seconds


def served(log: Path, offset: int) -> tuple[int, int, int]:
    """(served in parallel, served at all, new offset) from the patched server's DEBUG log."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read()
        end = f.tell()
    parallel = text.count(b"served in parallel")
    return parallel, parallel + text.count(b"served sequentially"), end


def measure(label: str, name: str, options: dict, env: dict, workdir: Path, min_idle_cpus: int, requests: int) -> dict:
    url = f"/api/products/?limit={ROWS}"
    extra = {}
    if name == "mod_wsgi":
        for kind in ("patched", "plain"):
            root = workdir / f"apache-{kind}"
            root.mkdir(mode=0o755, exist_ok=True)
            extra[kind] = {"server_root": str(root)}
    log = workdir / f"{name}-{options.get('interface', '')}-patched.log"
    patched_env = {
        **env,
        "MULTICORE_DRF_PATCH": "1",
        "MULTICORE_LOG_LEVEL": "DEBUG",
        "MULTICORE_MIN_IDLE_CPUS": str(min_idle_cpus),
    }
    cls = runner.SERVERS[name]
    with (
        cls(patched_env, workers=1, log_file=str(log), **options, **extra.get("patched", {})) as patched,
        cls(
            {**env, "MULTICORE_DRF_PATCH": "0"},
            workers=1,
            log_file=str(workdir / f"{name}-plain.log"),
            **options,
            **extra.get("plain", {}),
        ) as plain,
    ):
        for server in (patched, plain, patched, plain):
            timed(server, url)
        _, _, offset = served(log, 0)
        times: dict[str, list[float]] = {"patched": [], "plain": []}
        for i in range(requests):
            order = [("patched", patched), ("plain", plain)]
            for kind, server in order if i % 2 == 0 else order[::-1]:
                times[kind].append(timed(server, url))
        parallel, total, _ = served(log, offset)
    row = {"server": label, "parallel": f"{parallel}/{total}"}
    for kind, values in times.items():
        row[f"{kind}_p50"] = statistics.median(values) * 1000
        row[f"{kind}_p95"] = percentile(values, 0.95) * 1000
    row["speedup"] = row["plain_p50"] / row["patched_p50"]
    print(
        f"  {label}: patched p50 {row['patched_p50']:.1f} ms, unpatched {row['plain_p50']:.1f} ms "
        f"({row['speedup']:.2f}x; parallel {row['parallel']}; load {load()})",
        flush=True,
    )
    return row


def markdown(db: str, rows: list[dict], min_idle_cpus: int, requests: int) -> str:
    lines = [
        f"### {db}: one client, {ROWS:,} rows (latency, ms)",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; each server with 1 worker process, 2 multicore workers; "
        f"`/api/products/?limit={ROWS}`, ~0.3 ms of Python per row; {requests} requests each way, alternating; "
        f"client on 127.0.0.1; busy-CPU guard `multicore_min_idle_cpus = {min_idle_cpus}`.",
        "",
        "| server | patched p50 | patched p95 | unpatched p50 | unpatched p95 | speed-up (p50) | served in parallel |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['server']} | {r['patched_p50']:.1f} | {r['patched_p95']:.1f} | {r['plain_p50']:.1f} | "
        f"{r['plain_p95']:.1f} | {r['speedup']:.2f}x | {r['parallel']} |"
        for r in rows
    ]
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--write", metavar="FILE", help="also write the Markdown table to FILE")
    parser.add_argument(
        "--min-idle-cpus",
        type=int,
        default=1,
        help="the patched server's busy-CPU guard (multicore_min_idle_cpus; 0 = off)",
    )
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed requests per server, each way")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted({n for _, n, _ in SERVERS}),
        help="run only these servers (repeatable)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="multicore-servers-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o777)
        env = environment(args.db, workdir)
        print(f"{args.db}: one client, {ROWS} rows (load average {load()})", flush=True)
        rows = [
            measure(label, name, options, env, workdir, args.min_idle_cpus, args.requests)
            for label, name, options in SERVERS
            if not args.only or name in args.only
        ]
    text = markdown(args.db, rows, args.min_idle_cpus, args.requests)
    print(text)
    if args.write:
        Path(args.write).write_text(text + "\n")


if __name__ == "__main__":
    main()
