"""The parent's side of the ledger: claiming a named job, storing and loading its plan, and
recording what happened to each chunk. (Workers mark chunks done: worker.py.)

One runner per name: the runner writes itself into ``BatchRun.owner`` ("host:pid:start time")
with a compare-and-swap update, and refreshes ``heartbeat_at`` while it runs. A second runner
finds the owner alive (same host: the process exists with the same start time; another host:
a heartbeat younger than ``STALE_AFTER``) and is refused; a dead owner's claim is taken over,
and the chunks it left ``running`` go back to ``pending``.
"""

from __future__ import annotations

import collections
import datetime
import os
import socket
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from multicore.batch import txn
from multicore.batch.errors import BatchLockedError, BatchPlanChangedError
from multicore.batch.models import BatchChunk, BatchRun
from multicore.exceptions import ConfigurationError

STALE_AFTER = datetime.timedelta(minutes=2)
HEARTBEAT_EVERY = 10.0  # seconds


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def me() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(owner: str, heartbeat: datetime.datetime | None) -> bool:
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host == socket.gethostname():
        return pid.isdigit() and _start_time(int(pid)) == started
    return heartbeat is not None and timezone.now() - heartbeat < STALE_AFTER


def _describe_owner(owner: str) -> str:
    host, _, rest = owner.partition(":")
    return f"pid {rest.partition(':')[0]} on {host}"


class Ledger:
    """A claimed named job. Use ``open()``; ``release()`` when the run ends."""

    def __init__(self, run: BatchRun, using: str) -> None:
        self.run = run
        self.using = using
        self.owner = run.owner
        self.queue: collections.deque = collections.deque()

    @property
    def chunks(self):
        return BatchChunk.objects.using(self.using).filter(run_id=self.run.pk)

    @classmethod
    def open(
        cls,
        name: str,
        using: str,
        fingerprint: str,
        description: str,
        chunk_size: int,
        plan_fn: Any,
        restart: bool = False,
        retry_failed: bool = False,
    ) -> Ledger:
        """Claims the job ``name`` (planning it with ``plan_fn()`` if new or restarted)."""
        runs = BatchRun.objects.using(using)
        if restart:
            existing = runs.filter(name=name).first()
            if existing is not None:
                _refuse_if_owned(existing)
                txn.write(using, lambda: runs.filter(pk=existing.pk, owner=existing.owner).delete())
        run = runs.filter(name=name).first()
        if run is None:
            if retry_failed:
                raise ConfigurationError(
                    f"--retry-failed: the batch job {name!r} has no ledger (it never ran, or was restarted)"
                )
            bounds = plan_fn()  # outside the write transaction: it may read for a while
            run = _create(using, name, fingerprint, description, chunk_size, bounds)
        elif run.fingerprint != fingerprint:
            raise BatchPlanChangedError(
                f"the batch job {name!r} was planned for another queryset, chunk size or function "
                f"({run.description}; now {description}). Its ledger does not fit this run: rerun with "
                "restart=True (manage.py runbatch --restart) to forget it and plan again, or use another name"
            )
        ledger = cls(run, using)
        ledger._claim()
        return ledger

    def _claim(self) -> None:
        run, mine = self.run, me()
        while True:
            run.refresh_from_db(using=self.using)
            _refuse_if_owned(run)
            now = timezone.now()

            def take(previous: str = run.owner, now: object = now) -> int:
                taken = (
                    BatchRun.objects.using(self.using)
                    .filter(pk=run.pk, owner=previous)
                    .update(owner=mine, heartbeat_at=now, started_at=now, status=BatchRun.RUNNING, finished_at=None)
                )
                if taken:
                    # A dead runner's chunks: their transactions died with their workers.
                    self.chunks.filter(status=BatchChunk.RUNNING).update(status=BatchChunk.PENDING)
                return taken

            if txn.write(self.using, take):
                self.owner = mine
                return

    def release(self, status: str) -> None:
        self.flush(wait=True)

        def done() -> None:
            self.chunks.filter(status=BatchChunk.RUNNING).update(status=BatchChunk.PENDING)
            BatchRun.objects.using(self.using).filter(pk=self.run.pk, owner=self.owner).update(
                owner="", status=status, finished_at=timezone.now(), heartbeat_at=timezone.now()
            )

        txn.write(self.using, done)

    def todo(self, retry_failed: bool) -> tuple[list[tuple[int, int, Any, Any, int]], int]:
        """(chunks to run as (id, index, lo, hi, attempts), how many are done already)."""
        wanted = [BatchChunk.FAILED] if retry_failed else [BatchChunk.PENDING, BatchChunk.FAILED]
        rows = (
            self.chunks.filter(status__in=wanted).order_by("index").values_list("id", "index", "lo", "hi", "attempts")
        )
        done = self.chunks.filter(status=BatchChunk.DONE).count()
        return [tuple(r) for r in rows], done

    # Writes during a run are queued and applied when the database lets us: on SQLite a worker's
    # chunk transaction holds the one write lock, and the runner's loop must not wait for it
    # (timeouts, Ctrl-C and progress would stall). flush(wait=True) at the end applies the rest.

    def later(self, fn: Any) -> None:
        self.queue.append(fn)

    def flush(self, wait: bool = False) -> None:
        while self.queue:
            fn = self.queue[0]
            if wait:
                txn.write(self.using, fn)
            elif not txn.try_write(self.using, fn):
                return
            self.queue.popleft()

    def mark_running(self, chunk_id: int) -> None:
        self.later(
            lambda: self.chunks.filter(pk=chunk_id, status__in=[BatchChunk.PENDING, BatchChunk.FAILED]).update(
                status=BatchChunk.RUNNING
            )
        )

    def mark(self, chunk_id: int, attempts: int, status: str, error: str = "", pid: int | None = None) -> None:
        """Records a chunk as pending (to retry) or failed, unless some attempt marked it done."""
        finished = timezone.now() if status == BatchChunk.FAILED else None
        self.later(
            lambda: (
                self.chunks.filter(pk=chunk_id)
                .exclude(status=BatchChunk.DONE)
                .update(status=status, attempts=attempts, error=error, worker_pid=pid, finished_at=finished)
            )
        )

    def heartbeat(self) -> None:
        self.later(
            lambda: (
                BatchRun.objects.using(self.using)
                .filter(pk=self.run.pk, owner=self.owner)
                .update(heartbeat_at=timezone.now())
            )
        )

    def is_done(self, chunk_id: int) -> tuple[bool, int | None]:
        row = self.chunks.filter(pk=chunk_id).values_list("status", "rows").first()
        return (row is not None and row[0] == BatchChunk.DONE), (row[1] if row else None)


def _refuse_if_owned(run: BatchRun) -> None:
    if run.owner and run.owner != me() and owner_alive(run.owner, run.heartbeat_at):
        raise BatchLockedError(
            f"the batch job {run.name!r} is already running ({_describe_owner(run.owner)}, since "
            f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}). One runner per name: wait for it to finish, "
            "or stop it (Ctrl-C) and rerun to resume"
        )
    if run.owner == me():
        raise BatchLockedError(f"the batch job {run.name!r} is already running in this process")


def _create(using: str, name: str, fingerprint: str, description: str, chunk_size: int, bounds: list) -> BatchRun:
    def create() -> BatchRun:
        run = BatchRun.objects.using(using).create(
            name=name,
            fingerprint=fingerprint,
            description=description,
            chunk_size=chunk_size,
            total_chunks=len(bounds),
        )
        BatchChunk.objects.using(using).bulk_create(
            [BatchChunk(run=run, index=i, lo=lo, hi=hi) for i, (lo, hi) in enumerate(bounds)], batch_size=2000
        )
        return run

    try:
        return txn.write(using, create)
    except Exception:
        # Two runners planned the same new job at once: the other one's insert won.
        existing = BatchRun.objects.using(using).filter(name=name).first()
        if existing is None:
            raise
        return existing


def status(using: str = "default", name: str | None = None) -> list[dict[str, Any]]:
    """Each job's counts, rows, owner and the last error of each failed chunk (``--status``)."""
    runs = BatchRun.objects.using(using).order_by("name")
    if name is not None:
        runs = runs.filter(name=name)
    out = []
    for run in runs:
        chunks = BatchChunk.objects.using(using).filter(run=run)
        agg = chunks.aggregate(
            done=Count("id", filter=Q(status=BatchChunk.DONE)),
            failed=Count("id", filter=Q(status=BatchChunk.FAILED)),
            pending=Count("id", filter=Q(status=BatchChunk.PENDING)),
            running=Count("id", filter=Q(status=BatchChunk.RUNNING)),
            rows=Sum("rows"),
        )
        failures = list(
            chunks.filter(status=BatchChunk.FAILED).order_by("index").values_list("index", "attempts", "error")
        )
        alive = owner_alive(run.owner, run.heartbeat_at)
        out.append(
            {
                "name": run.name,
                "status": run.status if (alive or run.status != BatchRun.RUNNING) else BatchRun.INTERRUPTED,
                "description": run.description,
                "total": run.total_chunks,
                **agg,
                "rows": agg["rows"] or 0,
                "owner": _describe_owner(run.owner) if alive else "",
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "failures": failures,
            }
        )
    return out
