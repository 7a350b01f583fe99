"""Progress of a batch: the counters workers bump (``tick()``), and how progress is shown.

The counters live in a small memfd created by the parent before it submits chunks; a worker maps
it through ``/proc/<parent pid>/fd/<fd>`` (the engine reaches payload segments the same way), so
a tick is one write to shared memory, no message. Each chunk position has a record: the pid of
the worker running it, when it started (the parent's per-chunk timeout counts from there), its
ticks and its attempt.

Shown as: ``"log"`` INFO records on the ``multicore.batch`` logger (what container logs need),
``"bar"`` a tqdm bar (``pip install 'django-multicore[progress]'``), ``None`` nothing, or any
callable, which receives a :class:`Progress` after every chunk, on ticks, and once at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import mmap
import os
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from multicore.batch.worker import RECORD
from multicore.exceptions import ConfigurationError

logger = logging.getLogger("multicore.batch")


class Counters:
    """The parent's memfd of per-chunk records."""

    def __init__(self, positions: int) -> None:
        self.fd = os.memfd_create("multicore-batch", os.MFD_CLOEXEC)
        size = max(1, positions) * RECORD.size
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.token = secrets.token_hex(8)

    @property
    def address(self) -> tuple[int, int, str]:
        return os.getpid(), self.fd, self.token

    def read(self, position: int) -> tuple[int, int, int, int]:
        """(pid, start time in time.monotonic_ns(), ticks, attempt) of a chunk position."""
        return RECORD.unpack_from(self.map, position * RECORD.size)

    def clear(self, position: int) -> None:
        RECORD.pack_into(self.map, position * RECORD.size, 0, 0, 0, 0)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@dataclasses.dataclass
class Progress:
    """What a progress callable receives."""

    name: str | None
    total: int  # chunks in this run (done before it included)
    done: int  # chunks done, including skipped ones
    failed: int
    skipped: int  # chunks found done in the ledger at the start
    running: int
    rows: int  # rows reported by finished chunks
    ticks: int  # tick() calls in chunks still running
    elapsed: float
    final: bool = False

    @property
    def rate(self) -> float:
        """Chunks per second in this run."""
        return (self.done - self.skipped) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = self.total - self.done - self.failed
        return left / self.rate if self.rate > 0 else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_line(p: Progress) -> str:
    percent = 100.0 * p.done / p.total if p.total else 100.0
    text = (
        f"{p.name or 'batch'}: {p.done:,}/{p.total:,} chunks ({percent:.1f}%), {p.rows + p.ticks:,} rows, "
        f"{p.rate:.1f} chunks/s, "
    )
    text += f"done in {_duration(p.elapsed)}" if p.final else f"ETA {_duration(p.eta)}"
    if p.failed:
        text += f", {p.failed} failed"
    return text


class LogRenderer:
    """INFO records on ``multicore.batch``: at most every ``interval`` seconds, and at the end."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = time.monotonic()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.final or now - self.last >= self.interval:
            self.last = now
            logger.info("%s", format_line(p))


class BarRenderer:
    """A tqdm bar over the chunks; ticks move it inside long chunks."""

    def __init__(self, file: TextIO | None = None) -> None:
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ConfigurationError(
                "progress='bar' needs tqdm: pip install 'django-multicore[progress]' (or use progress='log')"
            ) from exc
        self.bar = tqdm(total=0, unit="chunk", file=file or sys.stderr, dynamic_ncols=True, leave=True)
        self.chunk_size = 1

    def __call__(self, p: Progress) -> None:
        bar = self.bar
        if bar.total != p.total:
            bar.total = p.total
        inside = min(p.ticks / max(self.chunk_size, 1), max(p.running, 0) * 0.99)
        bar.n = round(p.done + inside, 2) if inside else p.done
        bar.set_postfix_str(f"{p.rows + p.ticks:,} rows" + (f", {p.failed} failed" if p.failed else ""), refresh=False)
        bar.refresh()
        if p.final:
            bar.close()


def renderer(progress: Any, interval: float, file: TextIO | None = None) -> Callable[[Progress], None] | None:
    """The callable for a ``progress`` argument ("auto", "bar", "log", None or a callable)."""
    if progress is None or progress == "none":
        return None
    if callable(progress):
        return progress
    if progress == "auto":
        stream = file or sys.stderr
        tty = getattr(stream, "isatty", lambda: False)()
        if tty:
            try:
                return BarRenderer(stream)
            except ConfigurationError:
                pass
        return LogRenderer(interval)
    if progress == "bar":
        return BarRenderer(file)
    if progress == "log":
        return LogRenderer(interval)
    raise ConfigurationError(
        f'run_batch(): progress must be "auto", "bar", "log", None or a callable, got {progress!r}'
    )
