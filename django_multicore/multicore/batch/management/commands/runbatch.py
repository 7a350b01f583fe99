"""``manage.py runbatch``: run a BatchJob on every core (or a Dask cluster's, ``--backend dask``),
resumably; ``--status`` shows the ledger.

Exit status: 0 every chunk done, 1 some failed (listed), 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from multicore.exceptions import MulticoreError


class Command(BaseCommand):
    help = "Runs a multicore.batch.BatchJob (dotted path or name) on every core, or shows the ledger (--status)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("job", nargs="?", help="dotted path of a BatchJob subclass, or its name")
        parser.add_argument("--status", action="store_true", help="list the jobs in the ledger (or just JOB)")
        parser.add_argument(
            "--backend",
            choices=["local", "dask"],
            help="where the chunks run: this machine's pool or the Dask cluster (default: the job's, else the configured backend)",
        )
        parser.add_argument("--workers", type=int, help="chunks at once (default: the pool's or the cluster's workers)")
        parser.add_argument("--chunk-size", type=int, help="rows per chunk (default: the job's)")
        parser.add_argument("--retries", type=int, help="retries per chunk (default: the job's)")
        parser.add_argument("--timeout", type=float, help="seconds per chunk (default: the job's)")
        parser.add_argument("--max-memory-per-worker", help='recycle a worker that grew more than this ("500MB")')
        parser.add_argument(
            "--progress",
            choices=["auto", "bar", "log", "none"],
            default="auto",
            help="auto: a bar on a terminal, log records otherwise",
        )
        parser.add_argument("--progress-interval", type=float, help="seconds between log records (default: the job's)")
        parser.add_argument("--restart", action="store_true", help="forget the job's ledger and plan again")
        parser.add_argument("--retry-failed", action="store_true", help="run only the chunks that failed")
        parser.add_argument("--database", default=None, help="the ledger's database for --status (default: default)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["status"]:
                self._status(options["job"], options["database"] or "default")
                return
            if not options["job"]:
                raise CommandError("name a job: manage.py runbatch myapp.batches.MyJob (or --status)")
            code = self._run(options)
        except MulticoreError as exc:
            raise CommandError(str(exc)) from exc
        if code:
            sys.exit(code)

    def _run(self, options: dict) -> int:
        from multicore.batch import progress as _progress
        from multicore.batch.jobs import find

        job = find(options["job"])()
        if not job.name:
            raise CommandError(f"{type(job).__qualname__} has no name: runbatch runs named (resumable) jobs")
        choice = options["progress"]
        interval = options["progress_interval"] or job.progress_interval
        show = _progress.renderer(None if choice == "none" else choice, interval, file=self.stderr._out)
        if isinstance(show, _progress.LogRenderer):
            _visible_log()
        try:
            report = job.run(
                backend=options["backend"],
                workers=options["workers"],
                chunk_size=options["chunk_size"],
                retries=options["retries"],
                timeout=options["timeout"],
                max_memory_per_worker=options["max_memory_per_worker"],
                restart=options["restart"] or None,
                retry_failed=options["retry_failed"] or None,
                progress=show or (lambda p: None),
            )
        except KeyboardInterrupt:
            self.stderr.write(f"{job.name}: interrupted; rerun the same command to resume")
            return 130
        summary = (
            f"{job.name}: {report.done}/{report.total} chunks done ({report.skipped} skipped), "
            f"{report.failed} failed, {report.rows:,} rows in {report.elapsed:.1f}s"
        )
        self.stdout.write(summary)
        if report.failed:
            for index, text in report.failures:
                self.stdout.write(f"  chunk {index} failed: {text.strip().splitlines()[0] if text.strip() else '?'}")
            self.stdout.write(
                f"  rerun with --retry-failed to run only these chunks; details: runbatch --status {job.name}"
            )
            return 1
        return 0

    def _status(self, name: str | None, using: str) -> None:
        from multicore.batch import ledger
        from multicore.batch.jobs import find

        if name is not None and "." in name:
            name = find(name).name
        jobs = ledger.status(using, name)
        if name is not None and not jobs:
            raise CommandError(f"no batch job named {name!r} in the ledger")
        if not jobs:
            self.stdout.write("no batch jobs in the ledger")
        for job in jobs:
            owner = f", running in {job['owner']}" if job["owner"] else ""
            self.stdout.write(
                f"{job['name']}: {job['status']}{owner}: {job['done']}/{job['total']} chunks done, "
                f"{job['failed']} failed, {job['pending'] + job['running']} pending, {job['rows']:,} rows  "
                f"[{job['description']}]"
            )
            for index, attempts, error in job["failures"]:
                last = error.strip().splitlines()[0] if error.strip() else "?"
                self.stdout.write(f"  chunk {index} failed after {attempts} attempt(s): {last}")


def _visible_log() -> None:
    """--progress log: make sure the INFO records reach a handler even without LOGGING set up."""
    log = logging.getLogger("multicore.batch")
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    current: logging.Logger | None = log
    while current is not None:
        if any(h.level <= logging.INFO for h in current.handlers):
            return
        current = current.parent if current.propagate else None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
