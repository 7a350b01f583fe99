"""The patched ``ListModelMixin.list``: installing it, and running a list across the pool.

:func:`parallel_list` keeps DRF's control flow; only the serialization of the rows moves to
the workers (docs/drf.md, "What runs where"). :func:`patch` and :func:`unpatch` swap it in and
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
from multicore._pool.lifecycle import default_workers
from multicore.drf import policy
from multicore.drf import rows as _rows
from multicore.drf.context import PROTOCOL, ListContext
from multicore.drf.splice import SplicedRows, render_items
from multicore.utils import ranges

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
    page = self.paginate_queryset(queryset)
    rows = page if page is not None else queryset
    data = _serialize(self, request, rows)
    response = self.get_paginated_response(data) if page is not None else Response(data)
    if isinstance(data, SplicedRows) and isinstance(response, Response):
        response.add_post_render_callback(data.splice_into)
    return response


parallel_list.multicore_patched = True  # type: ignore[attr-defined]


def _drf_list(self, request, *args, **kwargs):
    return mixins.ListModelMixin.__dict__["list"](self, request, *args, **kwargs)


def _sequential(view, rows) -> Any:
    return view.get_serializer(rows, many=True).data


def _fallback(view, rows, reason: str, detail: str = "") -> Any:
    policy.count(f"fallback:{reason}", view, detail)
    return _sequential(view, rows)


def _serialize(view, request, rows) -> Any:
    items = list(rows)  # the query unpatched DRF runs; a QuerySet keeps it in its result cache
    reason = policy.refusal(view, len(items))
    if reason is not None:
        return _fallback(view, rows, reason)
    task = multicore.Task() if policy.cores_free(view) else None
    if task is None:
        return _fallback(view, rows, "busy")
    try:
        context = ListContext.capture(view, request)
        blob = pickle.dumps(context, PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever cannot travel, DRF serializes here
        return _fallback(view, rows, "unshippable", f": {exc}")
    try:
        # One range per worker: each range costs a view and request rebuild in the worker, which
        # outweighed starting the first worker earlier with two smaller ranges each (1.62x ->
        # 1.70x at 1,000 rows in benchmarks/http.py).
        for start, end in ranges(items, number_of_workers=default_workers()):
            task.run(serialize_range, blob, _rows.dumps(items[start:end]))
        parts = task.get()
    except Exception as exc:  # noqa: BLE001 - the parent's own run raises the real error, if any
        _abandon(task)
        policy.logger.warning(
            "multicore.drf: parallel serialization of %s failed (%s: %s); serializing sequentially",
            type(view).__name__, type(exc).__name__, exc,
        )
        return _fallback(view, rows, "error")
    policy.count("parallel", view, f" ({len(items)} rows, {len(parts)} ranges)")
    serializer = view.get_serializer(rows, many=True)  # not evaluated: the backlink renderers use
    if context.splice:
        return SplicedRows(parts, len(items), context.separator, serializer)
    return ReturnList([row for part in parts for row in part], serializer=serializer)


def _abandon(task) -> None:
    """Collects (and drops) whatever a failed Task already started, so no slot stays taken."""
    try:
        task.get()
    except Exception:  # noqa: BLE001 - already falling back
        pass


def serialize_range(context_blob: bytes, rows_blob: bytes) -> Any:
    """In a worker: serializes one range of rows as the parent's view would."""
    context: ListContext = pickle.loads(context_blob)
    rows = _rows.loads(rows_blob)
    with context.activated():
        view = context.rebuild_view()
        data = view.get_serializer(rows, many=True).data
        if not context.splice:
            return list(data)
        return render_items(context.renderer, context.media_type, data)
