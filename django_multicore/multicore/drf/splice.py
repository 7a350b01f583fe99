"""JSON splicing: workers render their rows to JSON, the parent puts the bytes in its envelope.

DRF's ``JSONRenderer`` writes a list as ``"[" + items joined by a separator + "]"``; when the
response will be rendered that way, each worker renders its rows with the same renderer and the
parent splices the bytes in place of a placeholder, so rows are never decoded and re-encoded in
the parent and the response stays byte-identical. :func:`splice_format` decides whether that
holds for a request; :class:`SplicedRows` is what the view returns in place of the rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder


def splice_format(view: Any, request: Any) -> tuple[bool, bytes]:
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


def render_items(renderer: Any, media_type: str | None, data: Any) -> bytes:
    """In a worker: the rows as DRF renders them inside a list, without the list's brackets."""
    return renderer.render(data, media_type, {})[1:-1]


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
