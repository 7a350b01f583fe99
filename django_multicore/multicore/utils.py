"""Helpers for splitting work: ``ranges()`` (and, with Django, queryset and request helpers)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any

from multicore._pool.lifecycle import default_workers

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
    is counted with ``count()``.
    """
    if isinstance(min_range_size, bool) or not isinstance(min_range_size, int) or min_range_size < 0:
        raise ValueError(f"min_range_size must be an integer >= 0, got {min_range_size!r}")
    if number_of_workers is not None and (not isinstance(number_of_workers, int) or number_of_workers < 1):
        raise ValueError(f"number_of_workers must be a positive integer, got {number_of_workers!r}")
    count = _length(iterable)
    delta = max(math.ceil(count / (number_of_workers or default_workers())), min_range_size, 1)
    start = 0
    while start < count:
        end = min(start + delta, count)
        yield start, end
        start = end
