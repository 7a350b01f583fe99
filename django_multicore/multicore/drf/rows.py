"""How the rows of a list reach the workers: as primary keys to refetch, or shipped.

By default the parent runs only what decides *which* rows and in *what order*: the view's
filtered, ordered, paginated queryset reduced to primary keys (:func:`keys_queryset`, one cheap
query). Each worker gets the view's queryset (pickled: ``select_related``, ``prefetch_related``,
annotations and ``get_queryset()`` overrides travel with it) and its slice of keys, fetches
those rows itself and puts them back in the parent's order (:func:`fetch`).

Where refetching by primary key would not give the same rows (:func:`refetch_refusal`), the
parent fetches the page as DRF does and ships the model instances: :func:`dumps` sends each
instance as a tuple of its attribute values, its class and attribute names stored once per
shape (``pickle`` of a model instance goes through ``Model.__reduce__``, an app-registry lookup
and a version check per instance and again per ``select_related`` object: as slow as fetching
it). Instances whose class customises pickling, and anything that is not a model instance, are
pickled as usual, so the rebuilt rows equal what ``pickle`` would give.
"""

from __future__ import annotations

import pickle
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.db.models.query import ModelIterable

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_PLAIN = 0
_MODEL = 1


def _plain_model(cls: type) -> bool:
    return (
        cls.__reduce__ is Model.__reduce__
        and cls.__getstate__ is Model.__getstate__
        and getattr(cls, "__setstate__", None) is Model.__setstate__
        and cls.__reduce_ex__ is object.__reduce_ex__
    )


class _Encoder:
    def __init__(self) -> None:
        self.shapes: dict[tuple[type, tuple[str, ...]], int] = {}
        self.plain: dict[type, bool] = {}

    def encode(self, obj: Any) -> tuple:
        cls = type(obj)
        plain = self.plain.get(cls)
        if plain is None:
            plain = self.plain[cls] = isinstance(obj, Model) and _plain_model(cls)
        if not plain:
            return (_PLAIN, obj)
        attrs = obj.__dict__
        state = attrs["_state"]
        keys = tuple(attrs)
        shape = self.shapes.setdefault((cls, keys), len(self.shapes))
        related = state.fields_cache
        if related:
            related = {name: None if rel is None else self.encode(rel) for name, rel in related.items()}
        return (
            _MODEL,
            shape,
            [attrs[k] if k != "_state" else None for k in keys],
            related or None,
            state.db,
            state.adding,
        )


def dumps(rows: list) -> bytes:
    """``rows`` (model instances or anything picklable) as bytes for :func:`loads`."""
    encoder = _Encoder()
    encoded = [encoder.encode(row) for row in rows]
    shapes: list[tuple[type, tuple[str, ...]] | None] = [None] * len(encoder.shapes)
    for (cls, keys), index in encoder.shapes.items():
        shapes[index] = (cls, keys)
    return pickle.dumps((shapes, encoded), _PROTOCOL)


def _decode(item: tuple, shapes: list) -> Any:
    if item[0] == _PLAIN:
        return item[1]
    _, shape, values, related, db, adding = item
    cls, keys = shapes[shape]
    obj = cls.__new__(cls)
    obj.__dict__.update(zip(keys, values, strict=True))
    state = ModelState()
    state.db = db
    state.adding = adding
    if related:
        state.fields_cache = {name: None if rel is None else _decode(rel, shapes) for name, rel in related.items()}
    obj._state = state
    return obj


def loads(blob: bytes) -> list:
    shapes, encoded = pickle.loads(blob)
    return [_decode(item, shapes) for item in encoded]


class RowsChanged(Exception):
    """A row the parent picked was gone when a worker refetched it (deleted meanwhile)."""


def refetch_refusal(queryset: Any, paginator: Any) -> str | None:
    """Why the rows of ``queryset`` cannot be refetched by primary key faithfully, or None.

    The answer names the ``shipped:<reason>`` counted in ``multicore.drf.stats``.
    """
    if not isinstance(queryset, QuerySet):
        return "raw"  # RawQuerySet, a list, ...: no query to add "pk IN (...)" to
    if queryset._iterable_class is not ModelIterable:
        return "values"  # values(), values_list(): the rows are not instances with a pk
    query = queryset.query
    if query.combinator:
        return "combinator"  # union() and friends cannot be filtered afterwards
    if query.distinct_fields:
        return "distinct-fields"  # which row of each group is kept depends on the whole result
    if query.is_sliced:
        return "sliced"
    if _has_window(query):
        return "window"  # a window's value depends on the rows around it
    pk = queryset.model._meta.pk
    if pk is None or getattr(pk, "primary_key", False) is False or type(pk).__name__ == "CompositePrimaryKey":
        return "pk"
    if paginator is not None and not _key_paginator(paginator):
        return "paginator"  # its pages may need whole instances (to build links, say)
    return None


def _has_window(query: Any) -> bool:
    def windowed(expression: Any) -> bool:
        if getattr(expression, "contains_over_clause", False):
            return True
        if isinstance(expression, RawSQL) and "over" in expression.sql.lower():
            return True
        return any(windowed(e) for e in expression.get_source_expressions() if e is not None)

    if any("over" in sql.lower() for sql, _ in query.extra.values()):
        return True
    return any(windowed(annotation) for annotation in query.annotations.values())


def _key_paginator(paginator: Any) -> bool:
    """DRF's own paginators, which need only the keys (cursors: the ordering field too)."""
    from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination

    cls = type(paginator)
    if isinstance(paginator, CursorPagination):
        return (
            cls.paginate_queryset is CursorPagination.paginate_queryset
            and cls._get_position_from_instance is CursorPagination._get_position_from_instance
        )
    if isinstance(paginator, PageNumberPagination):
        return cls.paginate_queryset is PageNumberPagination.paginate_queryset
    if isinstance(paginator, LimitOffsetPagination):
        return cls.paginate_queryset is LimitOffsetPagination.paginate_queryset
    return False


def keys_queryset(queryset: QuerySet, paginator: Any, request: Any, view: Any) -> QuerySet:
    """``queryset`` reduced to what decides which rows and in what order: primary keys.

    Same filters and ordering, so the same rows in the same order; no ``select_related`` joins,
    no prefetching, no instances. CursorPagination reads the first ordering field of a page's
    rows to build its links (from dicts as well as instances), so for it rows are dicts of the
    key and that field.
    """
    keys = queryset.prefetch_related(None)
    field = _cursor_field(paginator, request, queryset, view)
    if field is not None:
        return keys.values(*dict.fromkeys(["pk", field]))
    return keys.values_list("pk", flat=True)


def _cursor_field(paginator: Any, request: Any, queryset: QuerySet, view: Any) -> str | None:
    from rest_framework.pagination import CursorPagination

    if not isinstance(paginator, CursorPagination):
        return None
    return paginator.get_ordering(request, queryset, view)[0].lstrip("-")


def cursor_refusal(paginator: Any, request: Any, queryset: QuerySet, view: Any) -> str | None:
    """A cursor ordered on a relation reads ``str(related object)`` from the instance: ship."""
    field = _cursor_field(paginator, request, queryset, view)
    if field is None or field == "pk" or field in queryset.query.annotations:
        return None
    try:
        model_field = queryset.model._meta.get_field(field)
    except Exception:  # noqa: BLE001 - not a model field: DRF would fail the same way
        return "paginator"
    return "paginator" if model_field.is_relation else None


def keys_of(rows: list) -> list:
    """The primary keys of a page drawn from :func:`keys_queryset`."""
    if rows and isinstance(rows[0], dict):
        return [row["pk"] for row in rows]
    return list(rows)


def fetch(queryset: QuerySet, keys: list) -> list:
    """The rows of ``queryset`` with these primary keys, in the order of ``keys``.

    The database need not sort them (the order is the parent's); a key twice in ``keys`` (a
    join that repeats a row) gives the row twice, as in the parent's page.
    """
    if not keys:
        return []
    subset = queryset.filter(pk__in=set(keys))
    subset.query.clear_ordering(force=True, clear_default=True)
    by_key = {row.pk: row for row in subset}
    try:
        return [by_key[key] for key in keys]
    except KeyError as exc:
        raise RowsChanged(f"row {exc.args[0]!r} is no longer there") from None
