"""Helpers for splitting work: ``ranges()`` (and, with Django, queryset and request helpers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from multicore._pool.lifecycle import range_size

if TYPE_CHECKING:  # for type checkers and IDEs; at run time they load on first use (below)
    from multicore.db.queryset import in_atomic_block, keyset_filter, keyset_ranges, parallel_safe, stable_order
    from multicore.request import PicklableWSGIRequest

__all__ = [
    "ranges",
    "keyset_ranges",
    "keyset_filter",
    "stable_order",
    "in_atomic_block",
    "parallel_safe",
    "PicklableWSGIRequest",
]

# Django helpers load lazily, so plain-Python users never import Django.
_LAZY = {
    "keyset_ranges": "multicore.db.queryset",
    "keyset_filter": "multicore.db.queryset",
    "stable_order": "multicore.db.queryset",
    "in_atomic_block": "multicore.db.queryset",
    "parallel_safe": "multicore.db.queryset",
    "PicklableWSGIRequest": "multicore.request",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multicore.utils' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def _length(iterable: Any) -> int:
    if "django" in sys.modules:
        from django.db.models.query import QuerySet

        if isinstance(iterable, QuerySet):
            from multicore.db.queryset import guard_atomic

            guard_atomic(iterable, "ranges(queryset)", stacklevel=4)  # workers cannot see uncommitted rows
            return iterable.count()  # one COUNT(*) instead of fetching every row
    return len(iterable)


def ranges(iterable: Any, min_range_size: int = 0, number_of_workers: int | None = None) -> Iterator[tuple[int, int]]:
    """Yields ``(start, end)`` pairs covering ``0..len(iterable)`` once, about one per worker.

    Each range is at least ``min_range_size`` long, except possibly the last. A Django QuerySet
    is counted with ``count()``. Bad arguments raise ``ConfigurationError`` (a ``ValueError``).
    """
    range_size(0, min_range_size, number_of_workers)  # bad arguments fail before a queryset is counted
    count = _length(iterable)
    delta = range_size(count, min_range_size, number_of_workers)
    start = 0
    while start < count:
        end = min(start + delta, count)
        yield start, end
        start = end
