"""Django REST Framework list patch: serialize a list endpoint's rows on every core.

``MULTICORE = {"drf-list-patch": True}`` makes the multicore app call :func:`patch` in
``ready()``; it replaces ``rest_framework.mixins.ListModelMixin.list`` (once, keeping the
original) with :func:`parallel_list`, which keeps DRF's control flow::

    queryset = self.filter_queryset(self.get_queryset())   # in the parent, as always
    page = self.paginate_queryset(queryset)                 # in the parent, as always
    data = <the page (or list) serialized by the pool, in order>
    return self.get_paginated_response(data)  # or Response(data)

Only the serialization is spread: the rows the parent fetched are split into ranges, each
worker rebuilds the view and a DRF ``Request`` (from a :class:`PicklableWSGIRequest`, with the
parent's authenticated user, version and negotiated renderer) and serializes its range, and
the parent joins the parts. When the response is rendered as plain JSON, workers render their
rows too and the parent splices their bytes into its envelope, byte-identical to DRF's output.

It falls back to DRF's own list, silently and never with an error, when the view opts out
(``multicore_list = False``), the list is shorter than ``"drf-min-items"``, a database
connection is inside ``atomic()`` (workers would not see its uncommitted writes), no CPU is idle
at that instant (``"drf-min-idle-cpus"``), ``Task()`` returns None (load guard, or already inside
a worker), the request or view cannot be pickled,
or anything goes wrong in the pool. :data:`stats` counts what happened, by reason.
"""

from __future__ import annotations

import functools
import logging
import pickle
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from types import FunctionType, MethodType
from typing import Any

from django.db import connections
from django.urls import get_script_prefix, get_urlconf, set_script_prefix, set_urlconf
from django.utils import timezone, translation
from rest_framework import mixins
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

import multicore
from multicore._pool import lifecycle
from multicore._pool.lifecycle import default_workers
from multicore.drf import rows as _rows
from multicore.settings import get_config
from multicore.utils import ranges

__all__ = ["patch", "unpatch", "is_patched", "parallel_list", "stats", "SplicedRows"]

logger = logging.getLogger("multicore.drf")

#: What the patched list did, by outcome: "parallel", "fallback:<reason>".
stats: Counter[str] = Counter()
_stats_lock = threading.Lock()
_patch_lock = threading.Lock()

_cpus: int | None = None

#: The ListModelMixin.list that patch() replaced (None while unpatched).
original_list: Any = None

_PROTOCOL = pickle.HIGHEST_PROTOCOL
# View attributes never shipped: the parent's request and response objects, the paginator (it
# holds the parent's page; workers do not paginate) and the response headers.
_VIEW_SKIP = frozenset({"request", "response", "headers", "_paginator"})


def _count(outcome: str) -> None:
    with _stats_lock:
        stats[outcome] += 1


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
    """``ListModelMixin.list`` with the page serialized by the multicore pool (see module doc)."""
    if getattr(self, "multicore_list", True) is False:
        _count("fallback:disabled")
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


def _serialize(view, request, rows) -> Any:
    items = list(rows)  # the query unpatched DRF runs; a QuerySet keeps it in its result cache
    reason = _refusal(view, items)
    if reason is not None:
        _count(f"fallback:{reason}")
        logger.debug("multicore.drf: %s served sequentially (%s)", type(view).__name__, reason)
        return _sequential(view, rows)
    # Always the local pool: a page's rows are rendered here, whatever the configured backend.
    task = multicore.Task(backend="local") if _cores_free(view) else None
    if task is None:
        _count("fallback:busy")
        logger.debug("multicore.drf: %s served sequentially (busy)", type(view).__name__)
        return _sequential(view, rows)
    try:
        context = _Context.capture(view, request)
        blob = pickle.dumps(context, _PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - whatever cannot travel, DRF serializes here
        _count("fallback:unshippable")
        logger.debug("multicore.drf: %s cannot be shipped to workers: %s", type(view).__name__, exc)
        return _sequential(view, rows)
    try:
        # One range per worker: each range costs a view and request rebuild in the worker, which
        # outweighed starting the first worker earlier with two smaller ranges each (1.62x ->
        # 1.70x at 1,000 rows in benchmarks/http.py).
        for start, end in ranges(items, number_of_workers=default_workers()):
            task.run(_serialize_range, blob, _rows.dumps(items[start:end]))
        parts = task.get()
    except Exception as exc:  # noqa: BLE001 - the parent's own run raises the real error, if any
        _abandon(task)
        _count("fallback:error")
        logger.warning(
            "multicore.drf: parallel serialization of %s failed (%s: %s); serializing sequentially",
            type(view).__name__,
            type(exc).__name__,
            exc,
        )
        return _sequential(view, rows)
    _count("parallel")
    logger.debug(
        "multicore.drf: %s served in parallel (%d rows, %d ranges)", type(view).__name__, len(items), len(parts)
    )
    serializer = view.get_serializer(rows, many=True)  # not evaluated: the backlink renderers use
    if context.splice:
        return SplicedRows(parts, len(items), context.separator, serializer)
    from rest_framework.utils.serializer_helpers import ReturnList

    return ReturnList([row for part in parts for row in part], serializer=serializer)


def _cores_free(view) -> bool:
    """Whether enough CPUs are idle right now for the workers to add anything.

    Read from the kernel's instantaneous count of runnable threads (``/proc/loadavg``), which
    includes this one: when other requests or programs already keep the cores busy, splitting
    the work only adds the cost of shipping it, so DRF serializes here. A process that is
    runnable only for a moment (the database server finishing the query that fetched these
    rows) must not count, so a busy reading is confirmed twice, 0.3 ms apart.
    """
    wanted = getattr(view, "multicore_min_idle_cpus", None)
    if wanted is None:
        wanted = get_config()["drf-min-idle-cpus"]
    if wanted <= 0:
        return True
    global _cpus
    if _cpus is None:
        _cpus = lifecycle.usable_cpus()
    for attempt in range(3):
        if attempt:
            time.sleep(0.0003)
        try:
            with open("/proc/loadavg", "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return True  # no such file (not Linux): the Task() load guard still applies
        if _cpus - running >= wanted:
            return True
    return False


def _abandon(task) -> None:
    """Collects (and drops) whatever a failed Task already started, so no slot stays taken."""
    try:
        task.get()
    except Exception:  # noqa: BLE001 - already falling back
        pass


def _refusal(view, items: list) -> str | None:
    if len(items) < get_config()["drf-min-items"]:
        return "small"
    if any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
        return "atomic"
    return None


def _splice_format(view, request) -> tuple[bool, bytes]:
    """Whether workers may render JSON for splicing, and the item separator DRF would write."""
    renderer = getattr(request, "accepted_renderer", None)
    if getattr(view, "multicore_splice", True) is False or not isinstance(renderer, JSONRenderer):
        return False, b""
    # Only DRF's own render() and encoder: their output for a list is "[" + items + "]".
    if type(renderer).render is not JSONRenderer.render or renderer.encoder_class.default is not JSONEncoder.default:
        return False, b""
    if renderer.get_indent(getattr(request, "accepted_media_type", None), view.get_renderer_context()) is not None:
        return False, b""  # indentation depends on depth: the parent renders
    return True, (b"," if renderer.compact else b", ")


class _Context:
    """Everything a worker needs to rebuild the view and its DRF request (pickled once)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @classmethod
    def capture(cls, view, request) -> _Context:
        from multicore.request import PicklableWSGIRequest

        splice, separator = _splice_format(view, request)
        state = {}
        for name, value in view.__dict__.items():
            if name in _VIEW_SKIP or isinstance(value, (MethodType, FunctionType, functools.partial)):
                continue
            try:
                pickle.dumps(value, _PROTOCOL)
            except Exception:  # noqa: BLE001 - per-request caches and the like stay behind
                continue
            state[name] = value
        authenticator = getattr(request, "_authenticator", None)
        try:
            pickle.dumps(authenticator, _PROTOCOL)
        except Exception:  # noqa: BLE001
            authenticator = None
        return cls(
            view_class=type(view),
            view_state=state,
            request=PicklableWSGIRequest(request),
            user=request.user,
            auth=request.auth,
            authenticator=authenticator,
            renderer=getattr(request, "accepted_renderer", None),
            media_type=getattr(request, "accepted_media_type", None),
            language=translation.get_language(),
            timezone=timezone.get_current_timezone(),
            script_prefix=get_script_prefix(),
            urlconf=get_urlconf(),
            splice=splice,
            separator=separator,
        )

    def rebuild_view(self):
        view = self.view_class.__new__(self.view_class)
        view.__dict__.update(self.view_state)
        args, kwargs = getattr(view, "args", ()), getattr(view, "kwargs", {})
        request = view.initialize_request(self.request, *args, **kwargs)
        # The parent authenticated, checked permissions and throttled; workers reuse the outcome.
        request._authenticator = self.authenticator
        request.user = self.user
        request.auth = self.auth
        request.version, request.versioning_scheme = view.determine_version(request, *args, **kwargs)
        if self.renderer is not None:
            request.accepted_renderer, request.accepted_media_type = self.renderer, self.media_type
        view.request = request
        view.headers = view.default_response_headers
        return view


def _serialize_range(context_blob: bytes, rows_blob: bytes) -> Any:
    """In a worker: serializes one range of rows as the parent's view would."""
    context: _Context = pickle.loads(context_blob)
    rows = _rows.loads(rows_blob)
    previous_prefix, previous_urlconf = get_script_prefix(), get_urlconf()
    set_script_prefix(context.script_prefix)
    set_urlconf(context.urlconf)
    try:
        with translation.override(context.language), timezone.override(context.timezone):
            view = context.rebuild_view()
            data = view.get_serializer(rows, many=True).data
            if not context.splice:
                return list(data)
            rendered = context.renderer.render(data, context.media_type, {})
            return rendered[1:-1]  # the items, without the list's brackets
    finally:
        set_script_prefix(previous_prefix)
        set_urlconf(previous_urlconf)


class SplicedRows(Sequence):
    """A serialized list that workers already rendered to JSON.

    DRF's JSON encoder writes a placeholder in its place (via ``tolist()``) and, once the
    response is rendered, :meth:`splice_into` replaces the placeholder with the workers' bytes.
    Read from Python (``response.data["results"][0]``), the rows are decoded from that JSON.
    """

    def __init__(self, parts: list[bytes], length: int, separator: bytes, serializer: Any) -> None:
        self.json = b"[" + separator.join(part for part in parts if part) + b"]"
        self.serializer = serializer
        self._length = length
        self._rows: list | None = None
        self._marker = f"multicore-splice-{uuid.uuid4().hex}"

    def tolist(self) -> str:
        return self._marker

    def splice_into(self, response: Response) -> None:
        needle = f'"{self._marker}"'.encode()
        content = response.content
        if content.count(needle) == 1:
            response.content = content.replace(needle, self.json)

    def _decoded(self) -> list:
        if self._rows is None:
            import json

            self._rows = json.loads(self.json)
        return self._rows

    def __getitem__(self, index):
        return self._decoded()[index]

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        return iter(self._decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SplicedRows):
            return self.json == other.json
        return self._decoded() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SplicedRows: {self._length} rows, {len(self.json)} bytes of JSON>"

    def __reduce__(self):  # pickles (cache middleware, tests) as the plain list it stands for
        return (list, (self._decoded(),))
