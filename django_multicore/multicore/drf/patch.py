"""The patched ``ListModelMixin.list``: installing it, and running a list across the pool.

:func:`parallel_list` keeps DRF's control flow: the parent filters, orders and paginates the
queryset reduced to primary keys; the workers fetch their keys' rows and serialize them
(docs/drf.md, "What runs where"). Whatever the policy refuses runs DRF's own path. :func:`patch` and :func:`unpatch` swap it in and
out of ``ListModelMixin``, keeping DRF's original.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

from rest_framework import mixins
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import ReturnList

import multicore
from multicore._pool import lifecycle
from multicore.drf import policy
from multicore.drf import rows as _rows
from multicore.drf.context import PROTOCOL, ListContext
from multicore.drf.splice import SplicedRows, render_items

_patch_lock = threading.Lock()

#: The ListModelMixin.list that patch() replaced (None while unpatched).
original_list: Any = None


def patch() -> bool:
    """Installs :func:`parallel_list` as ``ListModelMixin.list``. Idempotent; True if it patched now."""
    global original_list
    with _patch_lock:
        current = mixins.ListModelMixin.list
        if getattr(current, "multicore_patched", False):
            return False
        original_list = current
        parallel_list.__wrapped__ = current  # type: ignore[attr-defined]
        mixins.ListModelMixin.list = parallel_list
        return True


def unpatch() -> bool:
    """Restores DRF's own ``ListModelMixin.list``. Idempotent; True if it unpatched now."""
    global original_list
    with _patch_lock:
        if original_list is None or not getattr(mixins.ListModelMixin.list, "multicore_patched", False):
            return False
        mixins.ListModelMixin.list = original_list
        original_list = None
        return True


def is_patched() -> bool:
    return getattr(mixins.ListModelMixin.list, "multicore_patched", False)


def parallel_list(self, request, *args, **kwargs):
    """``ListModelMixin.list`` with the page serialized by the multicore pool (see docs/drf.md)."""
    if getattr(self, "multicore_list", True) is False:
        policy.count("fallback:disabled", self)
        return (original_list or _drf_list)(self, request, *args, **kwargs)
    queryset = self.filter_queryset(self.get_queryset())
    # Decided before any query of ours: a refusal costs nothing, and the busy-CPU reading is not
    # disturbed by the database server still finishing our own query.
    prepared = _prepare(self, request, queryset)
    if isinstance(prepared, str):
        policy.count(f"fallback:{prepared}", self)
        return _drf_rest(self, queryset)
    task, context, blob = prepared
    paginator = self.paginator
    shipped = _rows.refetch_refusal(queryset, paginator) or _rows.cursor_refusal(paginator, request, queryset, self)
    queryset_blob = None
    if shipped is None:
        try:
            queryset_blob = _dump_queryset(queryset)
        except Exception:  # noqa: BLE001 - a queryset that cannot travel: its rows can
            shipped = "unpicklable"
    if shipped is None:
        keys_queryset = _rows.keys_queryset(queryset, paginator, request, self)
        page = self.paginate_queryset(keys_queryset)
        keys = _rows.keys_of(page if page is not None else list(keys_queryset))
        data = _by_keys(self, task, (context, blob), queryset, queryset_blob, keys)
    else:
        page = self.paginate_queryset(queryset)
        data = _shipped(self, task, (context, blob), list(page if page is not None else queryset), shipped)
    if data is _REDO:
        return _drf_rest(self, queryset)
    response = self.get_paginated_response(data) if page is not None else Response(data)
    if isinstance(data, SplicedRows) and isinstance(response, Response):
        response.add_post_render_callback(data.splice_into)
    return response


parallel_list.multicore_patched = True  # type: ignore[attr-defined]

_REDO = object()  # "serve this list as DRF does, from the start": a worker failed


def _drf_list(self, request, *args, **kwargs):
    return mixins.ListModelMixin.__dict__["list"](self, request, *args, **kwargs)


def _drf_rest(view, queryset) -> Response:
    """DRF's ``list()`` from the pagination on: the sequential path, the same SQL as unpatched."""
    page = view.paginate_queryset(queryset)
    if page is not None:
        return view.get_paginated_response(view.get_serializer(page, many=True).data)
    return Response(view.get_serializer(queryset, many=True).data)


def _prepare(view, request, queryset) -> tuple[Any, ListContext, bytes] | str:
    """A Task and the :class:`ListContext` (and pickled), or the reason to serve sequentially."""
    reason = policy.refusal(view, request)
    if reason is not None:
        return reason
    # Always the local pool: a page's rows are rendered here, whatever the configured backend.
    task = multicore.Task(backend="local") if policy.cores_free(view) else None
    if task is None:
        return "busy"
    try:
        context = ListContext.capture(view, request)
        return task, context, pickle.dumps(context, PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever cannot travel, DRF serializes here
        policy.logger.debug("multicore.drf: %s cannot be shipped to workers: %s", type(view).__name__, exc)
        return "unshippable"


def _dump_queryset(queryset) -> bytes:
    """The queryset, pickled without its rows (pickling a QuerySet would evaluate it)."""
    clone = queryset._chain()
    clone._result_cache, clone._prefetch_done = [], True
    return pickle.dumps(clone, PROTOCOL)


def _load_queryset(blob: bytes):
    queryset = pickle.loads(blob)
    queryset._result_cache, queryset._prefetch_done = None, False
    return queryset


def _by_keys(view, task, context: tuple[ListContext, bytes], queryset, queryset_blob: bytes | None, keys: list) -> Any:
    """The rows with these keys, fetched and serialized by the workers, in the order of ``keys``."""
    if len(keys) < policy.min_items():
        # The page is shorter than its size promised: DRF serves it, with its own query (rows
        # refetched by key would come in the keys' order, which an unordered queryset need not
        # share with DRF's query).
        policy.count("fallback:small", view)
        return _REDO
    calls = [(serialize_keys, context[1], queryset_blob, chunk) for chunk in _split(keys)]
    return _run(view, task, calls, keys, context[0], "")


def _shipped(view, task, context: tuple[ListContext, bytes], items: list, reason: str) -> Any:
    """The rows the parent fetched, shipped to and serialized by the workers, in order."""
    if len(items) < policy.min_items():
        policy.count("fallback:small", view)
        return view.get_serializer(items, many=True).data
    calls = [(serialize_rows, context[1], _rows.dumps(chunk)) for chunk in _split(items)]
    return _run(view, task, calls, items, context[0], reason)


#: The fewest rows worth a range of their own. Each range costs a worker about 1.5 ms (the view
#: and request rebuilt, a query); shorter last ranges should even the workers out, but on the
#: measured machine they never did: at 1,000 rows one range per worker beat 100-row minimums in
#: 6 of 7 comparisons, and at 3,000 and 5,000 rows every split tied (docs/benchmarks.md, "How a
#: page is split"). So a page under 2 x workers x this many rows goes out as one range per
#: worker, and only longer ones shrink.
MIN_RANGE_ROWS = 1000


def range_sizes(count: int, workers: int) -> list[int]:
    """How many rows each range of a ``count``-row page gets, in the order they are queued.

    Factoring: each round gives every worker an equal share of half the rows not yet handed out,
    so the ranges shrink as the page goes on; the rows left once a share would be under
    :data:`MIN_RANGE_ROWS` are cut in equal ranges, the same number for every worker (an odd
    range out would leave one worker idle while the other serializes it). Workers take
    queued calls in order, so a worker slowed down by anything else (another process, the
    database server, a vCPU the hypervisor slows, costlier rows) takes fewer of the later
    ranges, where with one range per worker the page waited for the slower half.
    """
    sizes: list[int] = []
    rest = count
    while rest:
        share = -(-rest // (2 * workers))
        if share < MIN_RANGE_ROWS:
            parts = min(rest, max(1, rest // (MIN_RANGE_ROWS * workers)) * workers)
            sizes += [rest // parts + (1 if i < rest % parts else 0) for i in range(parts)]
            break
        sizes += [share] * workers
        rest -= share * workers
    return sizes


def _split(items: list) -> list[list]:
    chunks, start = [], 0
    for size in range_sizes(len(items), lifecycle.local_workers()):
        chunks.append(items[start : start + size])
        start += size
    return chunks


def _run(view, task, calls: list[tuple], rows: list, context: ListContext, shipped: str) -> Any:
    """Runs the calls in the pool and joins their parts; :data:`_REDO` if anything failed."""
    try:
        for fn, *args in calls:
            task.run(fn, *args)
        parts = task.get()
    except Exception as exc:  # noqa: BLE001 - DRF's own run raises the real error, if any
        _abandon(task)
        reason = "changed" if isinstance(exc, _rows.RowsChanged) else "error"
        if reason == "error":
            policy.logger.warning(
                "multicore.drf: parallel serialization of %s failed (%s: %s); serializing sequentially",
                type(view).__name__,
                type(exc).__name__,
                exc,
            )
        policy.count(f"fallback:{reason}", view)
        return _REDO
    if shipped:
        policy.count(f"shipped:{shipped}")
    policy.count(
        "parallel", view, f" ({len(rows)} rows, {len(parts)} ranges{', shipped: ' + shipped if shipped else ''})"
    )
    serializer = view.get_serializer(rows, many=True)  # not evaluated: the backlink renderers use
    if context.splice:
        return SplicedRows(parts, len(rows), context.separator, serializer)
    return ReturnList([row for part in parts for row in part], serializer=serializer)


def _abandon(task) -> None:
    """Collects (and drops) whatever a failed Task already started, so no slot stays taken."""
    try:
        task.get()
    except Exception:  # noqa: BLE001 - already falling back
        pass


def serialize_keys(context_blob: bytes, queryset_blob: bytes, keys: list) -> Any:
    """In a worker: fetches the rows with these keys and serializes them as the parent's view would."""
    context: ListContext = pickle.loads(context_blob)
    with context.activated():
        return _serialized(context, _rows.fetch(_load_queryset(queryset_blob), keys))


def serialize_rows(context_blob: bytes, rows_blob: bytes) -> Any:
    """In a worker: serializes rows the parent fetched, as the parent's view would."""
    context: ListContext = pickle.loads(context_blob)
    with context.activated():
        return _serialized(context, _rows.loads(rows_blob))


def _serialized(context: ListContext, rows: list) -> Any:
    view = context.rebuild_view()
    data = view.get_serializer(rows, many=True).data
    if not context.splice:
        return list(data)
    return render_items(context.renderer, context.media_type, data)
