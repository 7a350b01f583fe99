"""The multicore demo: the example project from nothing to gunicorn, in one command.

    python example_project/demo.py        (or example_project/demo.sh)

Creates a fresh SQLite database in a temporary directory (migrate, seed 3,000 products), starts
gunicorn on 127.0.0.1 through the multicore WSGI middleware and hooks (example_project/
gunicorn.conf.py), then shows:

* the process tree: the gunicorn master, each gunicorn worker and its own multicore pool;
* the DRF list endpoint with the patch (``/api/products/``) against the same view with the
  patch turned off for it (``/api/product-sequential/``), same rows, timings side by side;
* a view and a report that use ``multicore.Task`` directly (``/keywords/``, ``/report/``);

stops gunicorn, checking nothing is left running; serves the same project with uvicorn (ASGI) and
times its async view ``/async-report/`` (the scoring awaited on the pool with ``arun()``/
``aget()``) against the same view doing the work inline, checking again that nothing is left
when uvicorn stops; and then runs a resumable batch job
(``manage.py runbatch catalog-quality``: a backfill of a derived column), interrupts it with
Ctrl-C (SIGINT) and reruns it, which resumes where it stopped. Set DATABASE_URL to use PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runner


def get(server: runner.Server, url: str) -> tuple[float, bytes]:
    status, body, seconds = server.request(url)
    if status != 200:
        raise SystemExit(f"GET {url} answered {status}: {body[:300]!r}")
    return seconds, body


def side_by_side(server: runner.Server, fast: str, slow: str, repeat: int = 7) -> tuple[float, float, bytes, bytes]:
    """Median ms of two URLs requested in turns (ABBA...), so a shared machine's drifting speed
    falls on both alike; and their last bodies."""
    times: dict[str, list[float]] = {fast: [], slow: []}
    bodies = {}
    for i in range(repeat):
        for url in (fast, slow) if i % 2 == 0 else (slow, fast):
            seconds, bodies[url] = get(server, url)
            times[url].append(seconds)
    return statistics.median(times[fast]) * 1000, statistics.median(times[slow]) * 1000, bodies[fast], bodies[slow]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="multicore-demo-") as tmp:
        env = runner.project_env()
        if "DATABASE_URL" not in env:
            env["EXAMPLE_SQLITE_NAME"] = os.path.join(tmp, "demo.sqlite3")
        print("1. Setting up the example project (migrate, seed)...")
        print("   " + runner.prepare_database(env))
        log = os.path.join(tmp, "gunicorn.log")
        print("2. Starting gunicorn (2 sync workers) with the multicore middleware and hooks...")
        with runner.Gunicorn(env, workers=2, log_file=log) as server:
            print(f"   serving on http://127.0.0.1:{server.port}/  (gunicorn master pid {server.master})")
            for worker, supervisors in server.tree().items():
                for supervisor, pool in supervisors.items():
                    print(f"   gunicorn worker {worker}: multicore supervisor {supervisor}, workers {pool}")

            print("3. The DRF list endpoint, patched vs the same view with the patch off (median of 7, in turns):")
            print(f"   {'rows':>6} {'patched':>10} {'unpatched':>10}  speed-up  same rows")
            for rows in (10, 100, 1000, 3000):
                fast, slow, a, b = side_by_side(
                    server, f"/api/products/?limit={rows}", f"/api/product-sequential/?limit={rows}"
                )
                same = json.loads(a)["results"] == json.loads(b)["results"]
                print(f"   {rows:>6} {fast:>8.1f}ms {slow:>8.1f}ms  {slow / fast:>7.2f}x  {same}")

            print("4. Views using multicore.Task directly:")
            cloud = server.json("/keywords/")
            print(
                f"   /keywords/: top keywords {cloud['keywords'][:6]} in {cloud['seconds']}s, "
                f"served by {cloud['served_by']}, computed by workers {cloud['computed_by']}"
            )
            report = server.json("/report/")
            print(
                f"   /report/: {len(report['categories'])} categories in {report['seconds']}s, "
                f"computed by workers {report['computed_by']}"
            )
            for row in report["categories"][:3]:
                print(f"      {row['category']:<10} {row['products']:>5} products, mean quality {row['mean']}")
            everything = runner.descendants(server.master)
            print("5. Stopping gunicorn...")
        left = [pid for pid in everything if runner.alive(pid)]
        print(f"   stopped; processes left behind: {left or 'none'}")
        if left:
            raise SystemExit(1)
        async_demo(env, os.path.join(tmp, "uvicorn.log"))
        batch_demo(env)


def async_demo(env: dict[str, str], log: str) -> None:
    """The async view under uvicorn: arun()/aget() on the pool vs the same work inline."""
    print("6. uvicorn (ASGI, exampleproject.asgi with multicore.asgi.MulticoreMiddleware), an async view:")
    with runner.Uvicorn(env, workers=1, log_file=log) as server:
        [(supervisor, pool)] = server.tree()[server.master].items()
        print(f"   uvicorn pid {server.master}: multicore supervisor {supervisor}, workers {pool}")
        fast, slow, a, b = side_by_side(server, "/async-report/", "/async-report/?inline=1")
        pooled, inline = json.loads(a), json.loads(b)
        same = pooled["categories"] == inline["categories"]
        print(
            f"   /async-report/ awaiting the pool (arun/aget): {fast:.1f}ms, computed by workers "
            f"{pooled['computed_by']}\n   the same work inline (?inline=1):            {slow:.1f}ms  "
            f"-> {slow / fast:.2f}x, same numbers: {same}"
        )
        everything = server.everything()
        print("   stopping uvicorn...")
    left = [pid for pid in everything if runner.alive(pid)]
    print(f"   stopped; processes left behind: {left or 'none'}")
    if left or not same:
        raise SystemExit(1)


def _runbatch(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runbatch", *args],
        cwd=runner.HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _show(output: str) -> None:
    for line in output.strip().splitlines():
        print("   | " + line.split(" multicore.batch: ", 1)[-1])


def _done_chunks(env: dict[str, str]) -> int:
    try:
        out = runner.manage("runbatch", "--status", "catalog-quality", env=env)
    except RuntimeError:  # not planned yet
        return 0
    return int(out.split("chunks done")[0].rsplit(":", 1)[1].split("/")[0]) if "chunks done" in out else 0


def batch_demo(env: dict[str, str]) -> None:
    """A backfill with `manage.py runbatch`: interrupted by Ctrl-C, then resumed."""
    env = {**env, "CATALOG_QUALITY_ROUNDS": "3000"}  # about 1.5 ms a product, so there is time to interrupt
    args = ("catalog-quality", "--chunk-size", "50", "--progress", "log", "--progress-interval", "0.5")
    print("7. A resumable batch job: backfilling Product.quality (catalog/batches.py) with")
    print(f"   manage.py runbatch {' '.join(args)}")
    proc = _runbatch(env, *args)
    deadline = time.monotonic() + 60
    while proc.poll() is None and _done_chunks(env) < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("   ...Ctrl-C (SIGINT) after some chunks:")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    _show(out)
    print(f"   exit status {proc.returncode} (130: interrupted, resumable)")
    _show(runner.manage("runbatch", "--status", env=env))
    print("8. The same command again resumes: chunks already done are skipped:")
    proc = _runbatch(env, *args)
    out, _ = proc.communicate(timeout=300)
    _show(out)
    print(f"   exit status {proc.returncode}")
    _show(runner.manage("runbatch", "--status", env=env))
    if proc.returncode != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
