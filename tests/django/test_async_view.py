"""An async Django view using arun()/aget(): served through Django's ASGI handler, and cancelled
(calls stopped, workers replaced) when the client disconnects."""

from __future__ import annotations

import asyncio
import os

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.test import AsyncClient

import multicore
from tests.support import pid_alive, wait_until, worker_pids

pytestmark = pytest.mark.timeout(60)


def busy_pids() -> list[int]:
    return [w["pid"] for w in multicore.pool_info()["workers"] if w["state"] == "busy" and w["pid"]]


@pytest.mark.asyncio
async def test_an_async_view_awaits_the_pool(pool):
    response = await AsyncClient().get("/async-pool/")
    assert response.status_code == 200
    body = response.json()
    assert body == {"pid": os.getpid(), "results": [0, 1, 2, 3]}


@pytest.mark.asyncio
async def test_a_client_disconnect_stops_the_views_calls(pool, tmp_path):
    marker = tmp_path / "queued-call-ran"
    app = get_asgi_application()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/async-pool/",
        "raw_path": b"/async-pool/",
        "query_string": f"sleep=30&marker={marker}".encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    assert await asyncio.to_thread(wait_until, lambda: len(busy_pids()) == 2)
    victims = busy_pids()
    await comm.send_input({"type": "http.disconnect"})
    await comm.wait(timeout=10)
    assert await asyncio.to_thread(wait_until, lambda: not any(map(pid_alive, victims))), "running calls killed"
    assert await asyncio.to_thread(wait_until, lambda: len(worker_pids()) == 2 and not busy_pids())
    assert multicore.pool_info()["slots_in_use"] == 0
    assert not marker.exists(), "the view's queued call never started"
