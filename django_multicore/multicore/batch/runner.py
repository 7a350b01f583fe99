"""``run_batch()``: plans a queryset into chunks, runs them on the pool, and keeps the ledger.

The chunks run on the local pool or on a Dask cluster (``backend=``; executors.py): the loop
here is the same for both. The parent keeps about two chunks per worker in flight (one running,
one queued behind it), so workers never wait and nothing piles up in memory; workers send back
row counts only. Results are collected as they finish. A chunk whose function raised, whose
worker died, or that passed ``timeout`` goes to the back of the queue until its retries are used
up, then is recorded failed.

Ctrl-C and SIGTERM: the first stops submitting, takes back the chunks not yet started, and lets
the running ones finish (up to ``STOP_GRACE`` seconds); the second, or the end of the grace,
kills their workers and puts their chunks back to pending. Then ``KeyboardInterrupt``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import threading
import time
import warnings
from typing import Any

from django.db import transaction
from django.db.transaction import TransactionManagementError

from multicore import backends
from multicore._pool import lifecycle, wire
from multicore.batch import executors, plan, worker
from multicore.batch import progress as _progress
from multicore.batch.errors import BatchFailedError
from multicore.batch.models import BatchChunk, BatchRun
from multicore.exceptions import ConfigurationError, MulticoreWarning

logger = logging.getLogger("multicore.batch")

#: Seconds the running chunks get to finish after the first Ctrl-C / SIGTERM.
STOP_GRACE = 60.0
_POLL = 0.05
#: Times a chunk goes back to the queue, uncounted, because its worker died before it began.
UNSTARTED_REQUEUES = 3


@dataclasses.dataclass
class BatchReport:
    """What ``run_batch()`` did. ``done`` counts every finished chunk, ``skipped`` those of them
    found done in the ledger; ``failures`` is ``[(chunk index, error text), ...]``."""

    name: str | None
    total: int
    done: int
    failed: int
    skipped: int
    rows: int
    elapsed: float
    failures: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done == self.total

    def raise_for_failures(self) -> None:
        """Raises :class:`BatchFailedError` naming the failed chunks, if any."""
        if not self.failed:
            return
        listed = "; ".join(
            f"chunk {i}: {text.strip().splitlines()[0] if text.strip() else '?'}" for i, text in self.failures[:10]
        )
        more = f" (and {len(self.failures) - 10} more)" if len(self.failures) > 10 else ""
        how = (
            "rerun with the same name to retry them (manage.py runbatch --retry-failed)"
            if self.name
            else "name the job to keep a ledger and retry only them"
        )
        raise BatchFailedError(
            f"batch {self.name or '(unnamed)'}: {self.failed} of {self.total} chunks failed: {listed}{more}; {how}",
            list(self.failures),
        )


@dataclasses.dataclass
class _Chunk:
    id: int | None
    index: int
    lo: Any
    hi: Any
    attempts: int  # in the ledger (attempts of earlier runs included)
    position: int  # its record in the progress counters
    tries: int = 0  # failed attempts in this run
    unstarted: int = 0  # times its worker died before it began (Dask)


@dataclasses.dataclass
class _InFlight:
    chunk: _Chunk
    attempt: int
    submitted: float
    handle: Any = None  # the executor's: a (slot, ticket) locally, a future on Dask


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}".replace("builtins.", "")
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ == "RemoteTraceback":
        text += "\n\nWorker traceback:" + str(cause)
    return text


def run_batch(
    queryset: Any,
    fn: Any,
    *,
    name: str | None = None,
    chunk_size: int = 1000,
    retries: int = 0,
    timeout: float | None = None,
    atomic: bool = True,
    max_memory_per_worker: int | str | None = None,
    progress: Any = "auto",
    progress_interval: float = 10,
    workers: int | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    backend: str | None = None,
) -> BatchReport:
    """Runs ``fn(chunk_queryset)`` over ``queryset`` in chunks of about ``chunk_size`` rows, on
    every core, or on the workers of a Dask cluster (``backend="dask"``; default: the configured
    backend). See docs/batch.md. ``fn`` returns the number of rows it processed, or None."""
    limit = plan.check_input(
        queryset, fn, chunk_size, retries, timeout, max_memory_per_worker, workers, progress_interval
    )
    backend = backends.resolve(backend)
    if backend == backends.DASK and limit is not None:
        warnings.warn(
            "run_batch(): max_memory_per_worker is not applied on the dask backend; start the dask "
            "workers with --memory-limit, and their nannies restart a worker that grows past it",
            MulticoreWarning,
            stacklevel=2,
        )
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise ConfigurationError(
            f"run_batch(): name must be a non-empty string of at most 200 characters or None, got {name!r}"
        )
    if retry_failed and name is None:
        raise ConfigurationError("run_batch(): retry_failed needs a named job (there is no ledger without a name)")
    show = _progress.renderer(progress, progress_interval)
    using = queryset.db
    # Inside a worker (local or Dask) the chunks run here: no pool inside a pool.
    inline = lifecycle.in_worker() or backends.in_remote_call() or _sequential_in_atomic(using)
    fingerprint, description = plan.fingerprint(queryset, fn, chunk_size)
    blob = plan.job_blob(queryset, fn, atomic=atomic, max_memory_per_worker=limit)
    started = time.monotonic()
    ledger = None
    if name is not None:
        from multicore.batch.ledger import Ledger

        ledger = Ledger.open(
            name,
            using,
            fingerprint,
            description,
            chunk_size,
            lambda: plan.plan(queryset, chunk_size),
            restart=restart,
            retry_failed=retry_failed,
        )
        try:
            rows, skipped = ledger.todo(retry_failed)
            total = ledger.run.total_chunks
        except BaseException:
            ledger.release(BatchRun.INTERRUPTED)
            raise
    else:
        bounds = plan.plan(queryset, chunk_size)
        rows, skipped, total = [(None, i, lo, hi, 0) for i, (lo, hi) in enumerate(bounds)], 0, len(bounds)  # type: ignore[misc]
    chunks = [_Chunk(*row, position=p) for p, row in enumerate(rows)]
    run = _Run(name, ledger, blob, chunks, total, skipped, retries, timeout, workers, show, started, chunk_size)
    status = BatchRun.INTERRUPTED
    try:
        report = run.inline() if inline else run.pooled(backend)
        status = BatchRun.DONE if report.ok else BatchRun.FAILED
        return report
    finally:
        if ledger is not None:
            ledger.release(status)


def _sequential_in_atomic(using: str) -> bool:
    if not transaction.get_connection(using).in_atomic_block:
        return False
    from multicore.db.queryset import _atomic_message, _mode

    message = _atomic_message(using, "run_batch() was called")
    if _mode() == "raise":
        raise TransactionManagementError(message)
    warnings.warn(message + "; the chunks run sequentially in this process", MulticoreWarning, stacklevel=3)
    return True


class _Run:
    def __init__(
        self, name, ledger, blob, chunks, total, skipped, retries, timeout, workers, show, started, chunk_size
    ):
        self.name, self.ledger, self.blob = name, ledger, blob
        self.queue = collections.deque(chunks)
        self.total, self.skipped, self.retries, self.timeout = total, skipped, retries, timeout
        self.workers, self.show, self.started = workers, show, started
        self.done, self.failed, self.rows = skipped, 0, 0
        self.failures: list[tuple[int, str]] = []
        self.inflight: list[_InFlight] = []
        self.signals = 0
        self.executor: executors.LocalChunks | executors.DaskChunks
        self.last_ticks = -1
        self.last_emit = 0.0
        if isinstance(show, _progress.BarRenderer):
            show.chunk_size = chunk_size

    # -- bookkeeping shared by both ways of running ------------------------------------------------

    def _succeeded(self, chunk: _Chunk, rows: int | None) -> None:
        self.done += 1
        self.rows += rows or 0

    def _failed(self, chunk: _Chunk, attempt: int, text: str, pid: int | None = None, requeue: bool = True) -> None:
        chunk.tries += 1
        chunk.attempts = attempt
        if chunk.tries <= self.retries:
            logger.warning(
                "%s: chunk %d failed (attempt %d), retrying: %s",
                self.name or "batch",
                chunk.index,
                chunk.tries,
                text.splitlines()[0],
            )
            if self.ledger is not None:
                self.ledger.mark(chunk.id, attempt, BatchChunk.PENDING, text, pid)
            if requeue:
                self.queue.append(chunk)
            return
        logger.error("%s: chunk %d failed: %s", self.name or "batch", chunk.index, text)
        if self.ledger is not None:
            self.ledger.mark(chunk.id, attempt, BatchChunk.FAILED, text, pid)
        self.failed += 1
        self.failures.append((chunk.index, text))

    def _report(self) -> BatchReport:
        self.failures.sort()
        report = BatchReport(
            self.name,
            self.total,
            self.done,
            self.failed,
            self.skipped,
            self.rows,
            time.monotonic() - self.started,
            self.failures,
        )
        self._emit(final=True)
        return report

    def _emit(self, final: bool = False, ticks: int = 0) -> None:
        if self.show is None:
            return
        self.show(
            _progress.Progress(
                self.name,
                self.total,
                self.done,
                self.failed,
                self.skipped,
                len(self.inflight),
                self.rows,
                ticks,
                time.monotonic() - self.started,
                final,
            )
        )

    # -- in this process (inside atomic(), or inside a worker) -------------------------------------

    def inline(self) -> BatchReport:
        self.counters = _progress.Counters(len(self.queue))
        try:
            while self.queue:
                chunk = self.queue.popleft()
                attempt = chunk.attempts + 1
                if self.ledger is not None:
                    self.ledger.mark_running(chunk.id)
                    self.ledger.flush(wait=True)
                try:
                    rows, _ = worker.run_chunk(
                        self.blob,
                        (chunk.id, chunk.index, chunk.lo, chunk.hi, attempt),
                        chunk.position,
                        self.counters.address,
                    )
                except Exception as exc:  # noqa: BLE001 - recorded like a worker's failure
                    self._failed(chunk, attempt, _error_text(exc))
                else:
                    self._succeeded(chunk, rows)
                    self._emit()
                if self.ledger is not None:
                    self.ledger.flush(wait=True)
            return self._report()
        finally:
            self.counters.close()

    # -- on the pool or the cluster (executors.py) ---------------------------------------------------

    def pooled(self, backend: str = backends.LOCAL) -> BatchReport:
        self.executor = executors.open_executor(backend, len(self.queue), self.workers)
        try:
            threads = self.executor.threads
            self.window = 2 * min(self.workers or threads, threads)
            if self.workers is not None and self.workers < threads:
                self.window = self.workers  # no more than `workers` chunks at once
            previous = self._install_signals()
            try:
                self._loop()
                if self.signals:
                    raise KeyboardInterrupt(f"batch {self.name or '(unnamed)'} interrupted; rerun to resume")
                return self._report()
            except BaseException:
                self._abandon()
                raise
            finally:
                self._restore_signals(previous)
        finally:
            self.executor.close()

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            logger.warning(
                "%s: %s: finishing the running chunks (up to %ds); again to abort",
                self.name or "batch",
                signal.Signals(signum).name,
                STOP_GRACE,
            )
        else:
            logger.warning("%s: aborting: stopping the running chunks", self.name or "batch")

    def _loop(self) -> None:
        stop_deadline = None
        next_heartbeat = time.monotonic() + 10.0
        while self.queue or self.inflight:
            if self.signals and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_GRACE
                self._withdraw_unstarted()
            if self.signals >= 2 or (stop_deadline is not None and time.monotonic() > stop_deadline):
                self._abandon()
                return
            if stop_deadline is not None and not self.inflight:
                return
            while stop_deadline is None and self.queue and len(self.inflight) < self.window:
                self._submit(self.queue.popleft())
            self._collect()
            if self.timeout is not None:
                self._check_timeouts()
            now = time.monotonic()
            if self.ledger is not None:
                if now >= next_heartbeat:
                    next_heartbeat = now + 10.0
                    self.ledger.heartbeat()
                self.ledger.flush()
            self._emit_ticks(now)

    def _submit(self, chunk: _Chunk) -> None:
        attempt = chunk.attempts + 1
        if self.ledger is not None:
            self.ledger.mark_running(chunk.id)
        spec = (chunk.id, chunk.index, chunk.lo, chunk.hi, attempt)
        call = _InFlight(chunk, attempt, time.monotonic())
        call.handle = self.executor.submit(self.blob, spec, call)
        self.inflight.append(call)

    def _collect(self) -> None:
        if not self.inflight:
            return
        for call, outcome in self.executor.collect(self.inflight, _POLL):
            self.inflight.remove(call)
            self._outcome(call, outcome)

    def _outcome(self, call: _InFlight, outcome: tuple) -> None:
        chunk = call.chunk
        if outcome[0] == "unstarted" and chunk.unstarted < UNSTARTED_REQUEUES:
            # Its worker died before the chunk began (Dask had queued it there): it never ran.
            chunk.unstarted += 1
            logger.info(
                "%s: chunk %d was queued on a worker that died; queued again", self.name or "batch", chunk.index
            )
            if self.signals:
                self._take_back(call)
            else:
                self.queue.appendleft(chunk)
            return
        if outcome[0] == "unstarted":
            outcome = ("lost", None, f"its Dask workers died {chunk.unstarted + 1} times before it began")
        if outcome[0] == "lost":
            _, pid, what = outcome
            if self._done_in_ledger(chunk):
                return
            text = f"multicore.exceptions.WorkerLostError: {what} while running chunk {chunk.index}"
            self._failed(chunk, call.attempt, text, pid, requeue=not self.signals)
            return
        try:
            rows, pid = wire.decode_result(outcome[1], outcome[2])
        except Exception as exc:  # noqa: BLE001 - the function's own error
            if isinstance(exc, worker.ChunkAlreadyDone) and self._done_in_ledger(chunk):
                return
            self._failed(chunk, call.attempt, _error_text(exc), requeue=not self.signals)
        else:
            self._succeeded(chunk, rows)
            self._emit()

    def _done_in_ledger(self, chunk: _Chunk) -> bool:
        """A worker lost or stopped right after committing its chunk: the chunk is done."""
        if self.ledger is None:
            return False
        done, rows = self.ledger.is_done(chunk.id)
        if done:
            self._succeeded(chunk, rows)
        return done

    def _check_timeouts(self) -> None:
        now = time.monotonic_ns()
        for call in list(self.inflight):
            pid, start, _, attempt = self.executor.read(call.chunk.position)
            if attempt != call.attempt or not start or now - start < self.timeout * 1e9:
                continue
            self.executor.cancel([call], kill=True)
            self.inflight.remove(call)
            if self._done_in_ledger(call.chunk):
                continue
            self._failed(
                call.chunk,
                call.attempt,
                f"multicore.exceptions.TimeoutExceededError: chunk {call.chunk.index} ran longer than "
                f"timeout={self.timeout}s; its worker (pid {pid}) was stopped and replaced",
                pid or None,
            )

    def _emit_ticks(self, now: float) -> None:
        if self.show is None or now - self.last_emit < 0.2:
            return
        ticks = 0
        for call in self.inflight:
            _, _, n, attempt = self.executor.read(call.chunk.position)
            if attempt == call.attempt:
                ticks += n
        self.last_emit = now
        if ticks != self.last_ticks or isinstance(self.show, _progress.LogRenderer):
            self.last_ticks = ticks
            self._emit(ticks=ticks)

    def _withdraw_unstarted(self) -> None:
        """First Ctrl-C: chunks queued behind a running one go back to pending."""
        for call in list(self.inflight):
            _, start, _, attempt = self.executor.read(call.chunk.position)
            if attempt == call.attempt and start:
                continue
            outcome = self.executor.take(call)
            self.inflight.remove(call)
            if outcome is not None:
                self._outcome(call, outcome)
                continue
            self.executor.cancel([call], kill=False)
            self._take_back(call)
        running = len(self.inflight)
        logger.warning("%s: stopping: waiting for %d running chunk(s)", self.name or "batch", running)

    def _abandon(self) -> None:
        """Stops every chunk still in flight (killing its worker) and puts it back to pending."""
        calls, self.inflight = self.inflight, []
        self.executor.cancel(calls, kill=True)
        for call in calls:
            self._take_back(call)

    def _take_back(self, call: _InFlight) -> None:
        if self.ledger is not None and not self._done_in_ledger(call.chunk):
            # A worker that got to commit keeps its "done" (mark() never overwrites it).
            self.ledger.mark(call.chunk.id, call.chunk.attempts, BatchChunk.PENDING)
