"""What travels through shared memory: encoding calls in the parent, results in the worker.

A request is ``pickle((function_blob, args, kwargs, result_format))`` where ``function_blob`` is
the function pickled by reference once and cached on both sides: pickling the function reference
costs more than the whole transport (docs/design.md). With ``use_dill`` the whole call is
dill-pickled instead. The request tag says which.

A response's tag is its kind: a result in one of the three formats, or an error report.
"""

from __future__ import annotations

import io
import json
import pickle
import traceback
from collections.abc import Callable
from typing import Any

from multicore.exceptions import ProtocolError, RemoteError, RemoteTraceback, SerializationError

PROTOCOL = 5

# Request tags.
CALL_PICKLE = 0
CALL_DILL = 1

# Result formats (serialization_format, as in django-multicore) and response kinds.
FORMATS = {"pickle": 0, "json": 1, "string": 2}
RESULT_ERROR = 3

_FN_CACHE_MAX = 512
_fn_blobs: dict[Any, bytes] = {}

# `bytes`/`bytearray` objects this large travel beside the pickle, as parts of their own: each is
# then copied once into shared memory and once out, instead of also through the pickle stream
# (a 100 MB echo went from 8 copies to 4).
OUT_OF_BAND_MIN = 256 * 1024


_SCAN_ITEMS = 8  # per container: a big list of small things must not cost a call per item


def _big_buffer(obj: Any) -> bool:
    return type(obj) in (bytes, bytearray) and len(obj) >= OUT_OF_BAND_MIN


def _has_big_buffer(obj: Any, depth: int = 2) -> bool:
    """Cheap look for a buffer worth sending out of band: the object itself, or within the first
    few items of up to ``depth`` levels of tuples, lists and dict values."""
    kind = type(obj)
    if kind is bytes or kind is bytearray:
        return len(obj) >= OUT_OF_BAND_MIN
    if not depth:
        return False
    if kind is dict:
        obj = obj.values()
    elif kind is not tuple and kind is not list:
        return False
    for seen, item in enumerate(obj, 1):
        if _has_big_buffer(item, depth - 1):
            return True
        if seen == _SCAN_ITEMS:
            return False
    return False


def _call_has_big_buffer(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """``_has_big_buffer`` for a call's arguments, flat for the usual case of a few small ones
    (it runs on every ``run()``)."""
    for value in (*args, *kwargs.values()) if kwargs else args:
        kind = type(value)
        if kind is int or kind is str or kind is float or kind is bool or value is None:
            continue
        if _has_big_buffer(value, 1):
            return True
    return False


class _OutOfBandPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, parts: list[Any]) -> None:
        super().__init__(file, PROTOCOL)
        self.parts = parts

    def persistent_id(self, obj: Any) -> Any:
        if _big_buffer(obj):
            self.parts.append(obj)
            return (len(self.parts) - 1, type(obj) is bytearray)
        return None


class _OutOfBandUnpickler(pickle.Unpickler):
    def __init__(self, parts: list[bytes]) -> None:
        super().__init__(io.BytesIO(parts[0]))
        self.parts = parts

    def persistent_load(self, pid: Any) -> Any:
        index, is_bytearray = pid
        part = self.parts[index]  # a fresh `bytes` the engine copied out of shared memory
        return bytearray(part) if is_bytearray else part


def dumps(obj: Any, big_buffers: bool | None = None) -> bytes | list[Any]:
    """Pickles ``obj``; with large buffers inside, as [pickle, buffer, ...] for the engine.

    ``big_buffers`` skips the scan when the caller already knows.
    """
    if not (_has_big_buffer(obj) if big_buffers is None else big_buffers):
        return pickle.dumps(obj, PROTOCOL)
    file, parts = io.BytesIO(), [b""]
    _OutOfBandPickler(file, parts).dump(obj)
    parts[0] = file.getvalue()
    return parts


def loads(payload: bytes | list[bytes]) -> Any:
    """The inverse of :func:`dumps`: the engine returns a list for a multi-part payload."""
    if isinstance(payload, list):
        return _OutOfBandUnpickler(payload).load()
    return pickle.loads(payload)


def _single(payload: bytes | list[bytes]) -> bytes:
    """A payload that travels in one part (JSON, text, error reports)."""
    if isinstance(payload, list):
        raise ProtocolError(f"a single-part payload arrived in {len(payload)} parts")
    return payload


def describe(obj: Any) -> str:
    """A short name for an object in error messages."""
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    text = f"{module}.{name}" if module and module != "builtins" else name
    code = getattr(obj, "__code__", None)
    if code is not None:
        text += f" (defined at {code.co_filename}:{code.co_firstlineno})"
    return text


def _function_blob(fn: Any) -> bytes:
    # Only plain functions and builtins are cached: a bound method's pickle holds its instance,
    # which may change between calls.
    cacheable = type(fn).__name__ in ("function", "builtin_function_or_method", "type")
    if cacheable:
        blob = _fn_blobs.get(fn)
        if blob is not None:
            return blob
    blob = pickle.dumps(fn, PROTOCOL)
    if cacheable:
        if len(_fn_blobs) >= _FN_CACHE_MAX:
            _fn_blobs.clear()
        _fn_blobs[fn] = blob
    return blob


def _culprit(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], dumps: Callable[[Any], object]) -> str:
    """Finds which part of a call cannot be pickled, for the error message."""
    candidates = [("the function", fn)]
    candidates += [(f"argument {i}", a) for i, a in enumerate(args)]
    candidates += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, obj in candidates:
        try:
            dumps(obj)
        except Exception as exc:  # noqa: BLE001 - any failure names the culprit
            return f"{label} ({describe(obj)}): {type(exc).__name__}: {exc}"
    return "the call"


def encode_call(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result_format: str, use_dill: bool
) -> tuple[int, bytes | list[Any]]:
    fmt = FORMATS[result_format]
    if use_dill:
        try:
            import dill
        except ImportError as exc:
            raise SerializationError(
                "use_dill=True needs the dill package: pip install 'django-multicore[dill]'"
            ) from exc
        try:
            return CALL_DILL, dill.dumps((fn, args, kwargs, fmt), protocol=PROTOCOL)
        except Exception as exc:
            raise SerializationError(
                f"cannot send {_culprit(fn, args, kwargs, dill.dumps)} to a worker, even with dill"
            ) from exc
    try:
        return CALL_PICKLE, dumps((_function_blob(fn), args, kwargs, fmt), _call_has_big_buffer(args, kwargs))
    except Exception as exc:
        raise SerializationError(
            f"cannot send {_culprit(fn, args, kwargs, lambda o: pickle.dumps(o, PROTOCOL))} to a "
            "worker. Use a module-level function and picklable arguments, or run(..., "
            "use_dill=True) for lambdas, closures and locally defined functions"
        ) from exc


class WorkerCache:
    """Functions already unpickled in this worker, keyed by their blob."""

    def __init__(self) -> None:
        self.functions: dict[bytes, Any] = {}

    def decode_call(self, tag: int, payload: bytes | list[bytes]) -> tuple[Any, tuple[Any, ...], dict[str, Any], int]:
        if tag == CALL_DILL:
            import dill

            call: tuple[Any, tuple[Any, ...], dict[str, Any], int] = dill.loads(_single(payload))
            return call
        blob, args, kwargs, fmt = loads(payload)
        fn = self.functions.get(blob)
        if fn is None:
            fn = pickle.loads(blob)
            if len(self.functions) >= _FN_CACHE_MAX:
                self.functions.clear()
            self.functions[blob] = fn
        return fn, args, kwargs, fmt


def encode_result(result: Any, fmt: int, fn: Any) -> tuple[int, bytes | list[Any]]:
    """In the worker: serialize a result, or an error report when it cannot be."""
    try:
        if fmt == FORMATS["pickle"]:
            return fmt, dumps(result)
        if fmt == FORMATS["json"]:
            return fmt, json.dumps(result).encode()
        if not isinstance(result, str):
            raise SerializationError(f"serialization_format='string' needs a str result, got {type(result).__name__}")
        return fmt, result.encode("utf-8", "surrogatepass")
    except Exception as exc:  # noqa: BLE001
        name = {0: "pickle", 1: "json", 2: "string"}[fmt]
        error = SerializationError(
            f"the result of {describe(fn)} ({type(result).__name__}) could not be sent back with "
            f"serialization_format={name!r}: {type(exc).__name__}: {exc}"
        )
        return encode_error(error, traceback.format_exc())


def encode_error(exc: BaseException, tb: str) -> tuple[int, bytes]:
    """In the worker: an exception as (pickled exception or None, type name, message, traceback)."""
    blob: bytes | None
    try:
        blob = pickle.dumps(exc, PROTOCOL)
        pickle.loads(blob)  # an exception that pickles but cannot be rebuilt would fail in the parent
        reason = ""
    except Exception as why:  # noqa: BLE001
        blob, reason = None, f"{type(why).__name__}: {why}"
    kind = type(exc)
    type_name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = "<unprintable exception>"
    return RESULT_ERROR, pickle.dumps((blob, type_name, message, tb, reason), PROTOCOL)


def decode_result(kind: int, body: bytes | list[bytes]) -> Any:
    """In the parent: the result, or raises the call's exception with the remote traceback."""
    if kind == FORMATS["pickle"]:
        try:
            return loads(body)
        except Exception as exc:
            raise SerializationError(f"a result could not be unpickled in the parent: {exc}") from exc
    if kind == FORMATS["json"]:
        return json.loads(_single(body))
    if kind == FORMATS["string"]:
        return _single(body).decode("utf-8", "surrogatepass")
    if kind != RESULT_ERROR:
        raise SerializationError(f"unknown result kind {kind}")
    blob, type_name, message, tb, reason = pickle.loads(_single(body))
    error: BaseException
    if blob is None:
        error = RemoteError(type_name, message, tb, reason)
    else:
        try:
            error = pickle.loads(blob)
        except Exception as why:  # noqa: BLE001 - whatever cannot be rebuilt arrives as RemoteError
            error = RemoteError(type_name, message, tb, f"{type(why).__name__}: {why}")
    error.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    raise error
