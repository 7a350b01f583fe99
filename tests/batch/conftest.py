"""Fixtures of the batch tests: rows to process, and the pool reset around each test (workers
inherit environment switches and options when they are forked)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

import multicore
from multicore.batch.models import BatchChunk
from tests.batch.models import Row
from tests.support import ROOT


@pytest.fixture
def rows(multicore_db):
    """100 rows with sparse keys (every 7th deleted); group = index % 20."""
    Row.objects.bulk_create(Row(value=i, group=i % 20) for i in range(115))
    Row.objects.filter(pk__in=list(Row.objects.values_list("pk", flat=True)[::7])).delete()
    assert Row.objects.count() == 98
    yield Row.objects.all()
    multicore.shutdown()


@pytest.fixture
def fresh_pool():
    """Shuts the pool down before and after, so workers fork with the test's environment."""
    multicore.shutdown()
    yield
    multicore.shutdown()


def counters() -> list[int]:
    return list(Row.objects.order_by("pk").values_list("counter", flat=True))


def runbatch(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """Starts ``manage.py runbatch`` (django-admin with the tests' settings) on the test database."""
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.batch.settings",
        "BATCH_TEST_DB_NAME": connection.settings_dict["NAME"],
        "PYTHONPATH": ROOT,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runbatch", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """The output of a :func:`runbatch` process; a process still running at the timeout is killed."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def done_chunks(name: str) -> int:
    return BatchChunk.objects.filter(run__name=name, status="done").count()
