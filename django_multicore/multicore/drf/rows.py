"""Compact transport of model instances (the rows of a DRF page) to workers.

``pickle`` of a Django model instance goes through ``Model.__reduce__``: a copy of the instance
dict, a pickled ``ModelState`` and, on load, an app-registry lookup and a version check, per
instance and again per ``select_related`` object. For a page of rows that is as slow as fetching
it. Here each instance travels as a tuple of its attribute values, its class and attribute
names stored once per shape; related objects cached by ``select_related`` travel the same way.
Instances whose class customises pickling, and anything that is not a model instance, are
pickled as usual, so the rebuilt rows equal what ``pickle`` would give.
"""

from __future__ import annotations

import pickle
from typing import Any

from django.db.models import Model
from django.db.models.base import ModelState

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
