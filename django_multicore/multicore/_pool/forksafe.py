"""Output streams the supervisor can use although it was forked from a threaded parent.

A buffered stream's lock belongs to whichever thread was writing when the parent forked. In the
child that thread does not exist, so the lock stays held and the first ``print()`` or log record
blocks forever (CPython re-creates the logging locks after fork, not those of io objects). The
supervisor therefore swaps every inherited output stream (``sys.stdout``/``sys.stderr`` and
those of logging's stream handlers) for a fresh one on the same file descriptor; workers, forked
from the single-threaded supervisor, inherit the fresh ones. Text still buffered in the old
objects belonged to the parent, which writes it itself.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

# The inherited streams, kept alive on purpose: freeing one flushes it, which takes its lock.
_abandoned: list[Any] = []


def _fresh(stream: Any) -> Any:
    if not isinstance(stream, io.TextIOWrapper) or not isinstance(stream.buffer, io.BufferedWriter):
        return stream  # unbuffered, in-memory or a custom object: nothing of ours to fix
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return stream
    raw = io.FileIO(fd, "w", closefd=False)
    fresh = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )
    _abandoned.append(stream)
    return fresh


def refresh_output_streams() -> None:
    """Call first thing in a child forked from a possibly threaded process."""
    replaced: dict[int, Any] = {}

    def swap(stream: Any) -> Any:
        if id(stream) not in replaced:
            replaced[id(stream)] = _fresh(stream)
        return replaced[id(stream)]

    for name in ("__stdout__", "__stderr__", "stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is not None:
            setattr(sys, name, swap(stream))
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if isinstance(handler, logging.StreamHandler) and handler.stream is not None:
            try:
                handler.stream = swap(handler.stream)  # not setStream(): it flushes the old one
            except AttributeError:
                pass  # logging.lastResort's stream is a property that follows sys.stderr
