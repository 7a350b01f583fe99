"""Checking a batch's input and planning its chunks: primary-key ranges of about ``chunk_size``
rows, found by walking the primary-key index (keyset), never by OFFSET slices of the rows."""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

from django.db.models import QuerySet

from multicore.exceptions import ConfigurationError, SerializationError
from multicore.settings import parse_size

#: More chunks than this is a mistake (a chunk_size far too small for the table).
MAX_CHUNKS = 100_000


def describe_fn(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        owner_type = type(owner)
        return f"{owner_type.__module__}.{owner_type.__qualname__}.{getattr(fn, '__name__', '?')}"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def check_input(
    queryset: Any,
    fn: Any,
    chunk_size: Any,
    retries: Any,
    timeout: Any,
    max_memory_per_worker: Any,
    workers: Any,
    progress_interval: Any,
) -> int | None:
    """Raises a ConfigurationError (or SerializationError for ``fn``) naming the problem and the
    fix; returns max_memory_per_worker in bytes."""
    if not isinstance(queryset, QuerySet):
        raise ConfigurationError(f"run_batch() needs a Django QuerySet, got {type(queryset).__name__}")
    if queryset.query.is_sliced:
        raise ConfigurationError(
            "run_batch() needs an unsliced QuerySet: chunks are primary-key ranges of the whole "
            "queryset. Remove the [start:end] and narrow it with filter() instead"
        )
    if getattr(queryset, "_fields", None) is not None or queryset._iterable_class.__name__ != "ModelIterable":
        raise ConfigurationError(
            "run_batch() needs a queryset of model instances, not values()/values_list(): "
            "fn receives a queryset and can call values() on it itself"
        )
    meta = queryset.model._meta
    pk = meta.pk
    if pk is None or type(pk).__name__ == "CompositePrimaryKey":
        raise ConfigurationError(
            f"run_batch(): {meta.label} has a composite primary key, which cannot be walked as a "
            "keyset; batch over a model with a single-column primary key"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"run_batch(): chunk_size must be a positive integer, got {chunk_size!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"run_batch(): retries must be an integer >= 0, got {retries!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigurationError(f"run_batch(): timeout must be a number of seconds > 0 or None, got {timeout!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigurationError(f"run_batch(): workers must be a positive integer or None, got {workers!r}")
    if isinstance(progress_interval, bool) or not isinstance(progress_interval, (int, float)) or progress_interval <= 0:
        raise ConfigurationError(f"run_batch(): progress_interval must be seconds > 0, got {progress_interval!r}")
    if not callable(fn):
        raise ConfigurationError(
            f"run_batch(): fn must be a callable taking a queryset, got {type(fn).__name__}: {fn!r:.80}"
        )
    try:
        pickle.loads(pickle.dumps(fn, 5))
    except Exception as exc:
        raise SerializationError(
            f"run_batch(): fn {describe_fn(fn)} cannot be sent to a worker ({type(exc).__name__}: {exc}). "
            "Use a function defined at module level (not a lambda, closure or local function)"
        ) from exc
    return _memory(max_memory_per_worker)


def _memory(value: Any) -> int | None:
    if value is None:
        return None
    parsed = parse_size(value) if isinstance(value, str) else value
    if isinstance(parsed, bool) or not isinstance(parsed, int) or parsed < 1:
        raise ConfigurationError(
            f'run_batch(): max_memory_per_worker must be bytes (an int) or a size such as "500MB", got {value!r}'
        )
    return parsed


def base_queryset(queryset: QuerySet) -> QuerySet:
    """The queryset without its ordering: chunks are read in primary-key order."""
    return queryset.order_by()


def fingerprint(queryset: QuerySet, fn: Any, chunk_size: int) -> tuple[str, str]:
    """(hash, description) of what a stored plan was made for: the queryset's SQL and
    parameters, its model, the chunk size and the function."""
    sql, params = base_queryset(queryset).query.sql_with_params()
    description = f"model={queryset.model._meta.label} fn={describe_fn(fn)} chunk_size={chunk_size}"
    text = "\n".join([description, sql, repr(params)])
    return hashlib.sha256(text.encode()).hexdigest(), description


def plan(queryset: QuerySet, chunk_size: int) -> list[tuple[Any, Any]]:
    """Primary-key ranges ``[(lo, hi), ...]`` (``lo <= pk < hi``) of about ``chunk_size`` rows each.

    The first ``lo`` and the last ``hi`` are None, so the ranges cover the whole key space: rows
    inserted after planning fall into the last range (or wherever their key lands). Each
    boundary costs one short walk of the primary-key index from the previous one. An empty
    queryset still gets one open range.
    """
    keys = base_queryset(queryset).order_by("pk").values_list("pk", flat=True)
    bounds: list[Any] = []
    rest = keys
    while True:
        nxt = list(rest[chunk_size : chunk_size + 1])
        if not nxt:
            break
        bounds.append(nxt[0])
        if len(bounds) >= MAX_CHUNKS:
            raise ConfigurationError(
                f"run_batch(): more than {MAX_CHUNKS:,} chunks of {chunk_size} rows; use a larger chunk_size"
            )
        rest = keys.filter(pk__gte=nxt[0])
    return list(zip([None, *bounds], [*bounds, None], strict=False))


def job_blob(queryset: QuerySet, fn: Any, *, atomic: bool, max_memory_per_worker: int | None) -> bytes:
    """The job as the workers receive it, pickled once."""
    base = base_queryset(queryset)
    job = {
        "fn": fn,
        "model": base.model._meta.label,
        "queryset_class": type(base),
        "query": base.query,
        "using": base.db,
        "atomic": atomic,
        "max_memory_per_worker": max_memory_per_worker,
    }
    try:
        return pickle.dumps(job, 5)
    except Exception as exc:
        raise SerializationError(
            f"run_batch(): the queryset cannot be sent to the workers ({type(exc).__name__}: {exc})"
        ) from exc
