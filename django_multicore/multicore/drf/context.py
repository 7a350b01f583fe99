"""What a worker needs to stand in for the parent's view: captured once per list, pickled once.

The parent authenticated, checked permissions, throttled and negotiated the renderer; a worker
rebuilds the same view class with the attributes ``as_view()`` and ``initial()`` set, and a DRF
``Request`` around a :class:`~multicore.request.PicklableWSGIRequest` that carries the parent's
outcome (user, auth, version, renderer) instead of running those steps again. The active
language, time zone, script prefix and urlconf travel too, so translated strings, datetimes and
hyperlinks come out as in the parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pickle
from collections.abc import Iterator
from types import FunctionType, MethodType
from typing import Any

from django.urls import get_script_prefix, get_urlconf, set_script_prefix, set_urlconf
from django.utils import timezone, translation

from multicore.drf.splice import splice_format

PROTOCOL = pickle.HIGHEST_PROTOCOL
# View attributes never shipped: the parent's request and response objects, the paginator (it
# holds the parent's page; workers do not paginate) and the response headers.
_VIEW_SKIP = frozenset({"request", "response", "headers", "_paginator"})


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, PROTOCOL)
    except Exception:  # noqa: BLE001 - whatever cannot travel stays behind
        return False
    return True


@dataclasses.dataclass
class ListContext:
    """The parent's view and request, as a worker rebuilds them (see the module doc)."""

    view_class: Any  # the view's class
    view_state: dict[str, Any]
    request: Any  # a PicklableWSGIRequest
    user: Any
    auth: Any
    authenticator: Any
    renderer: Any
    media_type: str | None
    language: str | None
    timezone: Any
    script_prefix: str
    urlconf: Any
    #: Workers render JSON for splicing (multicore.drf.splice), with this item separator.
    splice: bool
    separator: bytes

    @classmethod
    def capture(cls, view: Any, request: Any) -> ListContext:
        """Raises when the request or user cannot be shipped (the caller falls back)."""
        from multicore.request import PicklableWSGIRequest

        splice, separator = splice_format(view, request)
        state = {
            name: value
            for name, value in view.__dict__.items()
            if name not in _VIEW_SKIP
            and not isinstance(value, (MethodType, FunctionType, functools.partial))
            and _picklable(value)  # per-request caches and the like stay behind
        }
        authenticator = getattr(request, "_authenticator", None)
        return cls(
            view_class=type(view),
            view_state=state,
            request=PicklableWSGIRequest(request),
            user=request.user,
            auth=request.auth,
            authenticator=authenticator if _picklable(authenticator) else None,
            renderer=getattr(request, "accepted_renderer", None),
            media_type=getattr(request, "accepted_media_type", None),
            language=translation.get_language(),
            timezone=timezone.get_current_timezone(),
            script_prefix=get_script_prefix(),
            urlconf=get_urlconf(),
            splice=splice,
            separator=separator,
        )

    def rebuild_view(self) -> Any:
        """In a worker: the view, with a DRF request carrying the parent's outcome."""
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

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """In a worker: the parent's language, time zone, script prefix and urlconf, restored after."""
        previous_prefix, previous_urlconf = get_script_prefix(), get_urlconf()
        set_script_prefix(self.script_prefix)
        set_urlconf(self.urlconf)
        try:
            with translation.override(self.language), timezone.override(self.timezone):
                yield
        finally:
            set_script_prefix(previous_prefix)
            set_urlconf(previous_urlconf)
