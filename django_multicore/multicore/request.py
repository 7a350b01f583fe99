"""PicklableWSGIRequest: a Django request that can be sent to a worker and rebuilt there.

A WSGIRequest cannot be pickled: it holds the input stream, the server's socket and error
stream, and a lazily evaluated user. This subclass carries only what is safe and meaningful in
another process:

* method, path, path_info, script name, query string and ``GET``;
* ``POST`` (form fields) and the body when it is not a multipart upload;
* every META entry whose value is plain data (str, bytes, numbers, bools, None and tuples of
  them): headers, server name and port, ``wsgi.url_scheme``..., so ``scheme``, ``get_host()``,
  ``build_absolute_uri()`` and ``COOKIES`` give the parent's answers;
* the user (authenticated model instance or ``AnonymousUser``), the session when it pickles,
  ``LANGUAGE_CODE`` and ``urlconf`` when middleware set them.

Left behind: the input stream, uploaded files (``FILES`` is empty in the worker), socket and
file objects in META, and any other attribute middleware attached. ``resolver_match`` is
recomputed in the worker by resolving the path.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from django.core.handlers.wsgi import WSGIRequest
from django.http import QueryDict
from django.http.request import RawPostDataException
from django.urls import Resolver404, resolve
from django.utils.datastructures import MultiValueDict
from django.utils.functional import empty

from multicore.exceptions import MulticoreTypeError, SerializationError

__all__ = ["PicklableWSGIRequest"]

_PLAIN = (str, bytes, int, float, bool, type(None))
_OPTIONAL_ATTRIBUTES = ("session", "LANGUAGE_CODE", "urlconf")


def _plain(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)


def _unwrap_user(request: Any) -> Any:
    """The real user object behind AuthenticationMiddleware's SimpleLazyObject, or None."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = getattr(user, "_wrapped", None)
    if wrapped is empty:
        user._setup()
        wrapped = user._wrapped
    return user if wrapped is None else wrapped


def _query_lists(query: QueryDict) -> list[tuple[str, list[str]]]:
    return [(key, list(values)) for key, values in query.lists()]


def _rebuild_query(items: list[tuple[str, list[str]]], encoding: str | None) -> QueryDict:
    query = QueryDict(mutable=True, encoding=encoding)
    for key, values in items:
        query.setlist(key, values)
    query._mutable = False
    return query


def _read_body(request: WSGIRequest) -> bytes | None:
    body = request.__dict__.get("_body")
    if body is not None:
        return body
    if request.content_type == "multipart/form-data":
        return None  # may be large and holds files: only the parsed POST fields travel
    try:
        return request.body
    except RawPostDataException:
        return None


def capture(request: Any) -> dict[str, Any]:
    """The picklable state of ``request`` (a WSGIRequest or a DRF Request)."""
    request = getattr(request, "_request", request)
    if not isinstance(request, WSGIRequest):
        raise MulticoreTypeError(
            f"PicklableWSGIRequest needs a django WSGIRequest (or a DRF Request wrapping one), got "
            f"{type(request).__module__}.{type(request).__qualname__}"
        )
    body = _read_body(request)
    state: dict[str, Any] = {
        "META": {k: v for k, v in request.META.items() if isinstance(k, str) and _plain(v)},
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "encoding": request.__dict__.get("_encoding"),
        "GET": _query_lists(request.GET),
        "POST": _query_lists(request.POST),
        "body": body,
        "user": _unwrap_user(request),
        "extra": {},
    }
    try:
        pickle.dumps(state["user"], pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # any pickling failure gets the same advice
        raise SerializationError(
            f"PicklableWSGIRequest cannot carry request.user ({type(state['user']).__qualname__}): "
            f"{type(exc).__name__}: {exc}. Make the user object picklable"
        ) from exc
    for name in _OPTIONAL_ATTRIBUTES:
        if name in request.__dict__:
            value = request.__dict__[name]
            try:
                pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - optional: left behind when it does not pickle
                continue
            state["extra"][name] = value
    return state


class PicklableWSGIRequest(WSGIRequest):
    """A WSGIRequest built from another request that survives ``pickle`` (see the module doc).

    ``PicklableWSGIRequest(request)`` accepts a Django WSGIRequest or a DRF ``Request``; the copy
    behaves like the original in the parent, and ``pickle.loads(pickle.dumps(copy))`` gives an
    equivalent request in a worker.
    """

    def __init__(self, request: Any) -> None:
        self.__setstate__(capture(request))

    def __getstate__(self) -> dict[str, Any]:
        return capture(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        environ = dict(state["META"])
        # Django stores these decoded; WSGIRequest expects the server's latin-1 spelling.
        for key in ("PATH_INFO", "SCRIPT_NAME"):
            if isinstance(environ.get(key), str):
                environ[key] = environ[key].encode("utf-8").decode("iso-8859-1")
        body = state["body"]
        environ["wsgi.input"] = io.BytesIO(body or b"")
        WSGIRequest.__init__(self, environ)
        self.method = state["method"]
        self.path = state["path"]
        self.path_info = state["path_info"]
        if state["encoding"] is not None:
            self._encoding = state["encoding"]
        self.GET = _rebuild_query(state["GET"], self.encoding)
        self._post = _rebuild_query(state["POST"], self.encoding)
        self._files = MultiValueDict()
        if body is not None:
            self._body = body
        if state["user"] is not None:
            self.user = state["user"]
        for name, value in state["extra"].items():
            setattr(self, name, value)
        try:
            self.resolver_match = resolve(self.path_info, getattr(self, "urlconf", None))
        except Resolver404:
            self.resolver_match = None
