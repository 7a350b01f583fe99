"""DRF patch tests: real DRF views, real forked workers reading the test database.

Each comparison requests the same URL with the patch on and off and compares response bytes;
``multicore.drf.stats`` proves which path served each request.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from multicore import drf
from tests.testapp.models import Item, UUIDItem

# Other programs may keep this machine's CPUs busy: the busy-CPU guard is off here, and has its
# own test in test_fallbacks.py.
MULTICORE = {"workers": 2, "drf-min-items": 2, "drf-min-idle-cpus": 0}


@pytest.fixture
def drf_multicore() -> dict:
    """The MULTICORE setting the DRF tests run with (``drf_db`` applies it)."""
    return dict(MULTICORE)


@pytest.fixture
def drf_db(multicore_db, settings):
    settings.MULTICORE = MULTICORE
    settings.ROOT_URLCONF = "tests.drf.urls"
    users = [User.objects.create_user(name, password="x") for name in ("ann", "ben")]
    Item.objects.bulk_create(Item(name=f"{users[i % 2].username}-{i}", group=(i * 7) % 5) for i in range(90))
    Item.objects.create(name='caf\u00e9 \u2028 \u2603 <&> "quoted"', group=2)
    UUIDItem.objects.bulk_create(UUIDItem(name=f"u{i % 7}") for i in range(40))
    yield users
    drf.unpatch()


class Compare:
    """Requests a path patched and unpatched; returns the (identical) response."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, path: str, expect: str | dict = "parallel", **extra):
        drf.patch()
        try:
            before = dict(drf.stats)
            patched = self.client.get(path, **extra)
            counted = {k: v - before.get(k, 0) for k, v in drf.stats.items() if v != before.get(k, 0)}
        finally:
            drf.unpatch()
        plain = self.client.get(path, **extra)
        assert patched.status_code == plain.status_code, (patched.content[:300], plain.content[:300])
        assert patched.content == plain.content, _first_difference(patched.content, plain.content)
        assert counted == (expect if isinstance(expect, dict) else {expect: 1}), counted
        return patched


def _first_difference(a: bytes, b: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"responses differ at byte {at}: patched {a[max(0, at - 60) : at + 60]!r} vs DRF {b[max(0, at - 60) : at + 60]!r}"


@pytest.fixture
def compare(drf_db, client):
    return Compare(client)
