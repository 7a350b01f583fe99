"""Transactions that work with SQLite's single writer, under Django's default SQLite settings.

SQLite begins a transaction DEFERRED: it takes the write lock at its first write. A deferred
transaction that read first and then finds another connection holding the write lock fails at
once with "database is locked", whatever the busy timeout (waiting could deadlock). A chunk's
transaction reads, computes, writes, and marks itself done, while other workers do the same, so
on SQLite it begins IMMEDIATE: it takes the write lock first, waiting for it if needed. (On
SQLite chunk transactions therefore run one at a time; docs/batch.md.) ``BEGIN IMMEDIATE`` itself
gives up after the busy timeout (5 s by default), so it is retried: nothing has happened yet.

Other databases get a plain ``transaction.atomic()``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.db import OperationalError, connections, transaction

T = TypeVar("T")

#: How long a write waits for SQLite's lock in all, seconds (a chunk may hold it that long).
LOCK_WAIT = 3600.0


def is_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def _begin_immediate(conn: Any, wait: bool) -> None:
    if not wait:
        # One try: the parent's loop must not stall while a worker's chunk holds the lock.
        cursor = conn.cursor()
        (previous,) = cursor.execute("PRAGMA busy_timeout").fetchone()
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")
        return
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            conn.cursor().execute("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if not is_locked(exc) or time.monotonic() > deadline:
                raise


@contextlib.contextmanager
def chunk_atomic(using: str, wait: bool = True) -> Iterator[None]:
    """``transaction.atomic(using)``, begun IMMEDIATE on SQLite (outside any atomic block).
    ``wait=False``: on SQLite, raise "database is locked" at once instead of waiting."""
    conn = connections[using]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    conn.ensure_connection()
    # Django's atomic() starts a SQLite transaction through this method (Django 4.2 to 5.x);
    # an instance attribute shadows it for this block only.
    conn._start_transaction_under_autocommit = lambda: _begin_immediate(conn, wait)
    try:
        with transaction.atomic(using=using):
            yield
    finally:
        conn.__dict__.pop("_start_transaction_under_autocommit", None)


def write(using: str, fn: Callable[[], T]) -> T:
    """Runs ``fn`` (a few ledger writes) in one transaction, waiting out SQLite's lock."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            with chunk_atomic(using):
                return fn()
        except OperationalError as exc:
            if not is_locked(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def try_write(using: str, fn: Callable[[], Any]) -> bool:
    """Runs ``fn`` in one transaction if SQLite's write lock is free now; False if it is not
    (other databases: always runs it, waiting for row locks as usual)."""
    try:
        with chunk_atomic(using, wait=False):
            fn()
        return True
    except OperationalError as exc:
        if not is_locked(exc):
            raise
        return False
