"""Calls the DRF tests run inside a multicore worker."""

from django.test import Client, override_settings

from multicore import drf


def list_inside_worker(path: str) -> tuple[int, bytes, dict]:
    """Requests ``path`` from inside a worker with the patch on; returns status, body, stats delta."""
    drf.patch()
    before = dict(drf.stats)
    try:
        with override_settings(ROOT_URLCONF="tests.drf.urls", MULTICORE={"workers": 2, "drf-min-items": 2}):
            response = Client().get(path)
    finally:
        drf.unpatch()
    delta = {k: v - before.get(k, 0) for k, v in drf.stats.items() if v != before.get(k, 0)}
    return response.status_code, response.content, delta
