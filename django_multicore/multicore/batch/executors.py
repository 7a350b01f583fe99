"""Where a batch's chunks run: the local pool's slots, or the futures of a Dask cluster.

The runner (runner.py) keeps the queue, the ledger, retries, timeouts, progress and the two-stage
Ctrl-C; an executor only submits a chunk, says which chunks finished and how, reads a chunk's
progress record and stops a chunk. Both run the same ``worker.run_chunk``, so a chunk writes the
same ledger rows wherever it runs, and a job started on one backend resumes on the other.

What a finished chunk comes back as (``collect()``, ``take()``):

- ``("result", kind, body)``: what ``run_chunk`` returned or raised, encoded (``wire``);
- ``("lost", pid, what)``: its worker died while running it (``what`` says who, how);
- ``("unstarted",)``: (Dask) its worker died before the chunk began: it never ran, so it is
  queued again without counting an attempt.
"""

from __future__ import annotations

import queue
import secrets
import time
import traceback
from typing import Any

from multicore import options as _options
from multicore._pool import lifecycle, wire
from multicore.batch import progress as _progress
from multicore.batch import worker
from multicore.exceptions import PoolUnavailableError, WorkerLostError


class LocalChunks:
    """The chunks as calls in this process's pool; progress records in a memfd the workers map."""

    def __init__(self, positions: int, workers: int | None) -> None:
        if workers is not None and lifecycle.owned() is None:
            lifecycle.initialize(workers=workers)
        pool = lifecycle.ensure_pool()
        self.core = pool.core
        self.threads = pool.workers
        self.counters = _progress.Counters(positions)

    def submit(self, blob: bytes, spec: tuple, call: Any) -> tuple[int, int]:
        """Submits chunk ``spec`` of ``call`` (the runner's in-flight record); returns its handle."""
        position = call.chunk.position
        self.counters.clear(position)
        tag, payload = wire.encode_call(
            worker.run_chunk, (blob, spec, position, self.counters.address), {}, "pickle", False
        )
        handle = self.core.submit(tag, payload)
        while handle is None:  # every slot taken by other users of the pool
            self.core.wait_for_free_slot(0.05)
            handle = self.core.submit(tag, payload)
        return handle

    def collect(self, calls: list[Any], timeout: float) -> list[tuple[Any, tuple]]:
        """The finished ones among ``calls`` (waiting up to ``timeout`` for the first)."""
        first = calls[0]
        slot, ticket = first.handle
        outcome = self.core.wait(slot, ticket, timeout)
        finished = []
        for call in calls:
            result = outcome if call is first else self.core.take(*call.handle)
            if result is not None:
                finished.append((call, self._outcome(result)))
        return finished

    def take(self, call: Any) -> tuple | None:
        result = self.core.take(*call.handle)
        return None if result is None else self._outcome(result)

    @staticmethod
    def _outcome(result: tuple) -> tuple:
        if result[0] != "lost":
            return ("result", result[1], result[2])
        _, pid, status = result
        what = f"worker pid {pid} died with {WorkerLostError.describe(status)}"
        return ("lost", pid or None, what + (" (SIGKILL often means the OOM killer)" if status == -9 else ""))

    def read(self, position: int) -> tuple[int, int, int, int]:
        return self.counters.read(position)

    def cancel(self, calls: list[Any], kill: bool) -> None:
        """Withdraws the calls; ``kill``: a running one's worker is killed (and replaced)."""
        for call in calls:
            slot, ticket = call.handle
            self.core.cancel(slot, ticket, kill)

    def close(self) -> None:
        self.counters.close()


class DaskChunks:
    """The chunks as Dask tasks (``multicore.backends.dask``: the Django plugin, unique keys, no
    retries by Dask). Futures report their end through a done-callback and the chunks' start and
    ticks come as events, all into one queue, so the runner's loop sleeps until something happens."""

    def __init__(self, positions: int, workers: int | None) -> None:
        from multicore.backends import dask

        self.dask = dask
        self.conn = dask.session(_options.current())
        self.client = self.conn.client
        self.threads = dask.workers()
        self.token = f"batch-{secrets.token_hex(8)}"
        self.prefix = f"multicore-{self.token}"
        self.submitted = 0
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # ("done", future) | ("event", msg)
        # position -> [pid, start (this process's time.monotonic_ns), ticks, attempt, worker address]
        self.records: dict[int, list[Any]] = {}
        self.calls: dict[str, Any] = {}  # key -> the runner's in-flight call
        dask.listen(self.conn, self.token, lambda msg: self.inbox.put(("event", msg)))

    def submit(self, blob: bytes, spec: tuple, call: Any) -> Any:
        position = call.chunk.position
        self.records[position] = [0, 0, 0, 0, None]
        request = self.dask.encode_request(worker.run_chunk, (blob, spec, position, (worker.DASK, self.token)), {}, 0)
        key = f"{self.prefix}-{self.submitted}"
        self.submitted += 1
        self.calls[key] = call
        future = self.dask.submit(self.conn, request, key)
        # Called in a thread of the client's, whatever the future's end (finished, erred, cancelled).
        future.add_done_callback(lambda f: self.inbox.put(("done", f)))
        return future

    def collect(self, calls: list[Any], timeout: float) -> list[tuple[Any, tuple]]:
        done = []
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        while True:
            kind, value = item
            if kind == "event":
                self._event(value)
            else:
                call = self.calls.get(value.key)
                if call is not None and call.handle is value:
                    done.append(call)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
        return self._outcomes(done)

    def _event(self, msg: dict) -> None:
        record = self.records.get(msg.get("position"))  # type: ignore[arg-type]
        if record is None:
            return
        if "pid" in msg:  # the chunk began
            record[:] = [msg["pid"], time.monotonic_ns(), 0, msg["attempt"], msg["worker"]]
        elif msg.get("attempt") == record[3]:
            record[2] = msg["ticks"]

    def _outcomes(self, calls: list[Any]) -> list[tuple[Any, tuple]]:
        finished, results = [], []
        for call in calls:
            future = call.handle
            self.calls.pop(future.key, None)
            if future.status == "finished":
                results.append(call)
            elif future.status == "cancelled" or not self.conn.usable():
                raise PoolUnavailableError(
                    f"chunk {call.chunk.index} was lost: the connection to the Dask scheduler at "
                    f"{self.conn.address} broke (client status {self.client.status!r}); rerun to resume"
                )
            elif future.status == "error":
                finished.append((call, self._erred(call, future.exception())))
            else:
                finished.append((call, self._result_lost(call)))
        if not results:
            return finished
        try:
            outcomes = self.client.gather([call.handle for call in results])  # one round trip for all
        except Exception:  # noqa: BLE001 - a worker holding a result died since: one by one
            outcomes = None
        for i, call in enumerate(results):
            if outcomes is not None:
                finished.append((call, ("result", *outcomes[i])))
                continue
            try:
                if call.handle.status != "finished":
                    raise LookupError(call.handle.status)
                finished.append((call, ("result", *call.handle.result())))
            except Exception:  # noqa: BLE001
                finished.append((call, self._result_lost(call)))
        return finished

    def _erred(self, call: Any, exc: BaseException) -> tuple:
        lost = self.dask.lost_worker(exc)
        if lost is None:  # not the function's error (that comes back as a result): Dask's own
            return ("result", *wire.encode_error(exc, "".join(traceback.format_exception(exc))))
        if not self._started(call):
            return ("unstarted",)
        address, pid = lost
        pid = pid or self.records[call.chunk.position][0] or None
        return ("lost", pid, f"Dask worker {address}{f' (pid {pid})' if pid else ''} died (its nanny restarts it)")

    def _result_lost(self, call: Any) -> tuple:
        """The chunk finished but its result went with its worker. Cancelled, so that Dask does not
        compute it again; the runner asks the ledger whether the chunk committed."""
        self.client.cancel([call.handle], force=True)
        return ("lost", None, "the Dask worker holding its result died")

    def _started(self, call: Any) -> bool:
        return self.records[call.chunk.position][3] == call.attempt

    def take(self, call: Any) -> tuple | None:
        if not call.handle.done():
            return None
        self.calls.pop(call.handle.key, None)
        outcomes = self._outcomes([call])
        return outcomes[0][1] if outcomes else None

    def read(self, position: int) -> tuple[int, int, int, int]:
        pid, start, ticks, attempt, _ = self.records[position]
        return pid, start, ticks, attempt

    def cancel(self, calls: list[Any], kill: bool) -> None:
        """Cancels the tasks; ``kill``: the workers running one are killed by their nannies (a
        running Dask task cannot be stopped otherwise). A chunk that began a moment ago, its
        event still on the way, is cancelled without its worker being killed: it finishes, its
        result unread (atomic: its rows and done-mark commit together; the ledger says done)."""
        if not calls:
            return
        for call in calls:
            self.calls.pop(call.handle.key, None)
        self.client.cancel([call.handle for call in calls], force=True)
        if kill:
            running = {self.records[c.chunk.position][4] for c in calls if self._started(c)}
            self.dask.kill_workers(self.client, sorted(a for a in running if a))

    def close(self) -> None:
        self.dask.unlisten(self.token)
        if self.calls:
            self.client.cancel([call.handle for call in self.calls.values()], force=True)
            self.calls.clear()


def open_executor(backend: str, positions: int, workers: int | None) -> LocalChunks | DaskChunks:
    from multicore import backends

    if backend == backends.DASK:
        return DaskChunks(positions, workers)
    return LocalChunks(positions, workers)
