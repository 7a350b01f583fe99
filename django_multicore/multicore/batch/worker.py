"""What runs in a worker for one chunk, and ``tick()``.

A chunk call carries the job (pickled once by the parent: the function, the queryset's model,
class and query, options) and the chunk (bounds, ledger id, attempt). The worker rebuilds the
queryset restricted to the chunk's primary-key range, runs the function, and marks the chunk
done, in one transaction when the job is atomic. Only a row count goes back.

The same function runs in a local pool worker and on a Dask worker; only the way its progress
record (who runs it, since when, its ticks) reaches the runner differs: a write to the runner's
shared memory locally, an event through the scheduler on Dask (the worker may be another machine).
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import threading
import time
from typing import Any

from django.apps import apps
from django.utils import timezone

from multicore import _core
from multicore._pool import process
from multicore.batch import txn

# One progress record per chunk position: pid, start time (time.monotonic_ns), ticks, attempt.
RECORD = struct.Struct("qqqq")

_jobs: dict[bytes, Any] = {}  # job blob -> decoded job, in this worker
_baseline: tuple[int, int] | None = None  # (pid, RSS bytes when this worker started)
_counters: tuple[str, mmap.mmap] | None = None  # (token, mapped counters) of the current job
# The running chunk's record, for tick(). Per thread: a Dask worker may run chunks in several.
_running = threading.local()

#: Progress address of a chunk run on Dask: ("dask", the runner's listener token).
DASK = "dask"
#: Seconds between the tick events a chunk on Dask sends (ticks in between add up).
DASK_TICK_INTERVAL = 0.2


class ChunkAlreadyDone(Exception):
    """Another attempt at this chunk committed first (a straggler of a stopped run); this
    attempt's transaction rolls back, so the chunk's rows are processed once."""


def record_baseline() -> None:
    """Worker-start hook: the resident memory this worker started with (it shares its parent's
    pages at first, so a big parent makes a big baseline: growth is measured from here)."""
    global _baseline
    pid = os.getpid()
    _baseline = (pid, _core.rss_bytes(pid))


def _rss_growth() -> int:
    pid = os.getpid()
    if _baseline is None or _baseline[0] != pid:
        record_baseline()  # the pool started before the app registered the hook
    now = _core.rss_bytes(pid)
    return now - _baseline[1]  # type: ignore[index]


def tick(n: int = 1) -> None:
    """Moves the batch's progress by ``n`` items from inside a running chunk (cheap: one write
    to shared memory; on Dask, an event at most every 0.2 s). Does nothing outside a batch chunk."""
    record = getattr(_running, "record", None)
    if record is not None:
        record.tick(n)


class _SharedRecord:
    """The chunk's record in the runner's memfd (a local pool worker)."""

    __slots__ = ("view", "offset")

    def __init__(self, view: mmap.mmap, position: int) -> None:
        self.view = view
        self.offset = position * RECORD.size

    def begin(self, attempt: int) -> None:
        RECORD.pack_into(self.view, self.offset, os.getpid(), time.monotonic_ns(), 0, attempt)

    def tick(self, n: int) -> None:
        offset = self.offset + 16
        (value,) = struct.unpack_from("q", self.view, offset)
        struct.pack_into("q", self.view, offset, value + n)


class _EventRecord:
    """The chunk's record as events to the runner's Dask client: one when the chunk starts (the
    runner stamps it with its own clock: the machines' clocks may differ), then its ticks."""

    __slots__ = ("token", "position", "attempt", "ticks", "sent")

    def __init__(self, token: str, position: int) -> None:
        self.token = token
        self.position = position
        self.attempt = 0
        self.ticks = 0
        self.sent = 0.0

    def begin(self, attempt: int) -> None:
        from multicore.backends import dask

        self.attempt = attempt
        self.sent = time.monotonic()
        # Delivered before the chunk does anything: a worker that dies in the chunk has then
        # been seen running it (a retry counts it), not taken for one that never started it.
        dask.send_event(self.token, {"position": self.position, "attempt": attempt, "pid": os.getpid()}, wait=True)

    def tick(self, n: int) -> None:
        self.ticks += n
        now = time.monotonic()
        if now - self.sent >= DASK_TICK_INTERVAL:
            from multicore.backends import dask

            self.sent = now
            dask.send_event(self.token, {"position": self.position, "attempt": self.attempt, "ticks": self.ticks})


def _record(progress: tuple | None, position: int) -> _SharedRecord | _EventRecord | None:
    if progress is None:
        return None
    if progress[0] == DASK:
        return _EventRecord(progress[1], position)
    view = _open_counters(progress)
    return None if view is None else _SharedRecord(view, position)


def _open_counters(progress: tuple[int, int, str]) -> mmap.mmap | None:
    """Maps the parent's counters (a memfd, reached through /proc like the engine's payloads)."""
    global _counters
    pid, fd, token = progress
    if _counters is not None and _counters[0] == token:
        return _counters[1]
    if _counters is not None:
        _counters[1].close()
        _counters = None
    try:
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
    except OSError:
        return None  # progress is best effort; the chunk still runs
    try:
        view = mmap.mmap(handle, 0)
    finally:
        os.close(handle)
    _counters = (token, view)
    return view


def _decode(blob: bytes) -> Any:
    job = _jobs.get(blob)
    if job is None:
        if len(_jobs) > 16:
            _jobs.clear()
        job = _jobs[blob] = pickle.loads(blob)
    return job


def build_queryset(job: dict, lo: Any, hi: Any) -> Any:
    model = apps.get_model(job["model"])
    queryset = job["queryset_class"](model=model, query=job["query"].clone(), using=job["using"])
    if lo is not None:
        queryset = queryset.filter(pk__gte=lo)
    if hi is not None:
        queryset = queryset.filter(pk__lt=hi)
    return queryset.order_by("pk")


def _mark_done(job: dict, chunk: tuple, rows: int | None, started: float) -> None:
    from multicore.batch.models import BatchChunk

    chunk_id, _, _, _, attempt = chunk
    taken = (
        BatchChunk.objects.using(job["using"])
        .filter(pk=chunk_id)
        .exclude(status=BatchChunk.DONE)
        .update(
            status=BatchChunk.DONE,
            attempts=attempt,
            rows=rows,
            duration_ms=int((time.monotonic() - started) * 1000),
            worker_pid=os.getpid(),
            finished_at=timezone.now(),
            error="",
        )
    )
    if not taken:
        raise ChunkAlreadyDone(f"chunk {chunk[1]} was already done by another attempt; this one is rolled back")


def run_chunk(blob: bytes, chunk: tuple, position: int, progress: tuple | None) -> tuple[int | None, int]:
    """Runs one chunk: ``chunk`` is (ledger id or None, index, lo, hi, attempt). ``progress`` is
    the runner's counters (pid, fd, token), ("dask", token), or None. Returns (rows, pid).
    Raises the function's own exception (the parent records it)."""
    job = _decode(blob)
    started = time.monotonic()
    record = _record(progress, position)

    def begin() -> None:
        # The chunk's clock (the parent's timeout) starts once it has its transaction: on SQLite
        # it may first wait for the write lock while another chunk holds it.
        if record is not None:
            record.begin(chunk[4])
            _running.record = record

    try:
        if _baseline is None or _baseline[0] != os.getpid():
            record_baseline()
        queryset = build_queryset(job, chunk[2], chunk[3])
        ledger = chunk[0] is not None
        if job["atomic"]:
            with txn.chunk_atomic(job["using"]):
                begin()
                rows = job["fn"](queryset)
                if ledger:
                    _mark_done(job, chunk, _count(rows), started)
        else:
            begin()
            rows = job["fn"](queryset)
            if ledger:
                txn.write(job["using"], lambda: _mark_done(job, chunk, _count(rows), started))
    finally:
        _running.record = None
        limit = job["max_memory_per_worker"]
        if limit is not None and _rss_growth() > limit:
            process.retire_after_call()
    return _count(rows), os.getpid()


def _count(rows: Any) -> int | None:
    if rows is None:
        return None
    if isinstance(rows, bool) or not isinstance(rows, int):
        raise TypeError(f"a batch function returns a row count (int) or None, got {type(rows).__name__}")
    return rows
