"""QuerySet helpers: keyset ranges for large tables, stable ordering, and the atomic-block guard.

Workers are other processes with their own database connections, so they see committed data
only. Inside the caller's ``atomic()`` block they would miss its uncommitted writes: the helpers
here that read the database on the workers' behalf check for that (docs/database.md).
"""

from __future__ import annotations

import warnings
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError

from multicore._pool.lifecycle import range_size
from multicore.exceptions import ConfigurationError, MulticoreError, MulticoreTypeError, MulticoreWarning

__all__ = ["keyset_ranges", "keyset_filter", "stable_order", "in_atomic_block", "parallel_safe", "AtomicBlockError"]


class AtomicBlockError(MulticoreError, TransactionManagementError):
    """A helper that reads the database for the workers was used inside the caller's ``atomic()``
    block with ``MULTICORE["in-atomic-block"] = "raise"`` (workers cannot see its uncommitted writes)."""


def in_atomic_block(using: str | None = None) -> bool:
    """True when this thread's connection ``using`` (default: "default") is inside ``atomic()``."""
    return transaction.get_connection(using).in_atomic_block


def _mode() -> str:
    from multicore.settings import get_config

    return get_config()["in-atomic-block"]


def _atomic_message(using: str, what: str) -> str:
    return (
        f"{what} inside an atomic block on database {using!r}: multicore workers use their own "
        "connections and cannot see this transaction's uncommitted writes. Run the work "
        "sequentially when multicore.utils.parallel_safe(queryset) is False, or move it out of "
        "the atomic block (for ATOMIC_REQUESTS views: @transaction.non_atomic_requests)"
    )


def parallel_safe(queryset: QuerySet | None = None, *, using: str | None = None) -> bool:
    """Whether workers would read the same rows as the caller: False inside ``atomic()``.

    With ``MULTICORE["in-atomic-block"] = "raise"`` it raises AtomicBlockError (a
    TransactionManagementError) instead
    of returning False. Pass a queryset (its database is used) or ``using``.
    """
    alias = queryset.db if queryset is not None else (using or "default")
    if not in_atomic_block(alias):
        return True
    if _mode() == "raise":
        raise AtomicBlockError(_atomic_message(alias, "parallel_safe() was asked"))
    return False


def guard_atomic(queryset: QuerySet, helper: str, stacklevel: int = 3) -> None:
    """Warns (MulticoreWarning) or raises, per "in-atomic-block", if ``queryset`` is read inside
    ``atomic()`` to plan work for the workers."""
    alias = queryset.db
    if not in_atomic_block(alias):
        return
    message = _atomic_message(alias, f"{helper} was called")
    if _mode() == "raise":
        raise AtomicBlockError(message)
    warnings.warn(message, MulticoreWarning, stacklevel=stacklevel)


def _check_unsliced(queryset: Any, helper: str) -> None:
    if not isinstance(queryset, QuerySet):
        raise MulticoreTypeError(f"{helper} needs a Django QuerySet, got {type(queryset).__name__}")
    if queryset.query.is_sliced:
        raise MulticoreTypeError(f"{helper} needs an unsliced QuerySet; remove the [start:end] and filter instead")


def stable_order(queryset: QuerySet) -> QuerySet:
    """``queryset`` with the primary key appended to its ordering (or as its ordering).

    Slices of a queryset whose ordering is not unique (or absent) may overlap or skip rows,
    because the database is free to return ties in any order on each query; every worker's
    ``qs[start:end]`` is a separate query.
    """
    _check_unsliced(queryset, "stable_order()")
    query = queryset.query
    if query.order_by:
        ordering = list(query.order_by)
    elif query.default_ordering and queryset.model._meta.ordering:
        ordering = list(queryset.model._meta.ordering)
    else:
        ordering = []
    pk = queryset.model._meta.pk
    names = set()
    for item in ordering:
        if isinstance(item, str):
            if item == "?":
                raise ConfigurationError("stable_order(): a randomly ordered queryset cannot be split into ranges")
            names.add(item.lstrip("-"))
    if names & {"pk", pk.name, pk.attname}:
        return queryset
    return queryset.order_by(*ordering, "pk")


def keyset_filter(queryset: QuerySet, lo: Any, hi: Any) -> QuerySet:
    """The rows of one range from :func:`keyset_ranges`: ``lo <= pk < hi``, ordered by pk.

    ``None`` means no bound (the first range's ``lo``, the last range's ``hi``).
    """
    _check_unsliced(queryset, "keyset_filter()")
    if lo is not None:
        queryset = queryset.filter(pk__gte=lo)
    if hi is not None:
        queryset = queryset.filter(pk__lt=hi)
    return queryset.order_by("pk")


def keyset_ranges(
    queryset: QuerySet, min_range_size: int = 0, number_of_workers: int | None = None
) -> list[tuple[Any, Any]]:
    """Splits ``queryset`` into primary-key ranges ``[(lo, hi), ...]``, about one per worker.

    Give each range to a worker, which reads it with ``keyset_filter(queryset, lo, hi)``.
    Unlike ``qs[start:end]`` slices (OFFSET, which the database walks from the first row for
    every slice), this costs one COUNT plus one short index walk per boundary. The ranges cover
    the whole key space (first ``lo`` and last ``hi`` are None), so no row is lost or read twice,
    even for an unordered queryset or rows added meanwhile. Rows come back in primary-key order.
    """
    _check_unsliced(queryset, "keyset_ranges()")
    range_size(0, min_range_size, number_of_workers)  # bad arguments fail before any query
    guard_atomic(queryset, "keyset_ranges()")
    keys = queryset.order_by("pk").values_list("pk", flat=True)
    count = keys.count()
    if count == 0:
        return []
    size = range_size(count, min_range_size, number_of_workers)
    bounds: list[Any] = []
    rest = keys
    for _ in range((count - 1) // size):
        # The key `size` rows further on, walking the index from the previous boundary.
        nxt = list(rest[size : size + 1])
        if not nxt:
            break  # rows were deleted meanwhile; the open last range still covers the rest
        bounds.append(nxt[0])
        rest = keys.filter(pk__gte=nxt[0])
    lows = [None, *bounds]
    highs = [*bounds, None]
    return list(zip(lows, highs, strict=True))
