"""Batch functions the tests run in workers (module level, so they can be shipped).

Behaviour switches come from environment variables, which the pool's workers inherit (set them
before the pool starts) and which subprocess tests pass to ``manage.py runbatch``.
"""

from __future__ import annotations

import os
import time

from django.db.models import F

from multicore.batch import BatchJob, tick

_leak: list[bytes] = []


def bump(queryset) -> int:
    """Counts each row once more (read, then write: the SQLite deferred-transaction trap)."""
    pks = list(queryset.values_list("pk", flat=True))
    queryset.model.objects.filter(pk__in=pks).update(counter=F("counter") + 1)
    return len(pks)


def bump_rows(queryset) -> int:
    """Like bump(), row by row with save(), ticking (slow enough to interrupt)."""
    delay = float(os.environ.get("BATCH_TEST_ROW_DELAY", "0"))
    n = 0
    for row in queryset:
        row.counter += 1
        row.result = row.value * 2
        row.save(update_fields=["counter", "result"])
        n += 1
        tick()
        if delay:
            time.sleep(delay)
    return n


def fail_on_group(queryset) -> int:
    """Raises in chunks containing a row of group 13 (after writing: the writes must roll back)."""
    n = bump(queryset)
    if queryset.filter(group=13).exists():
        raise ValueError("group 13 is cursed")
    return n


def die_first_time(queryset) -> int:
    """os._exit(9) the first time it sees a row of group 13 (a marker file records it)."""
    marker = os.environ["BATCH_TEST_MARKER"]
    if queryset.filter(group=13).exists() and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return bump(queryset)


def die_always(queryset) -> int:
    if queryset.filter(group=13).exists():
        os._exit(9)
    return bump(queryset)


def sleep_on_group(queryset) -> int:
    """Sleeps long in chunks with a row of group 13 the first time (timeout tests)."""
    marker = os.environ["BATCH_TEST_MARKER"]
    if queryset.filter(group=13).exists() and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(60)
    return bump(queryset)


def leak(queryset) -> int:
    """Keeps 40 MB per chunk (a real leak), reports the pid in result."""
    _leak.append(os.urandom(40 * 1024 * 1024))
    pks = list(queryset.values_list("pk", flat=True))
    queryset.model.objects.filter(pk__in=pks).update(result=os.getpid(), counter=F("counter") + 1)
    return len(pks)


def record_pid(queryset) -> int:
    pks = list(queryset.values_list("pk", flat=True))
    queryset.model.objects.filter(pk__in=pks).update(result=os.getpid(), counter=F("counter") + 1)
    return len(pks)


def returns_none(queryset) -> None:
    bump(queryset)


def slow_ticks(queryset) -> int:
    n = 0
    for _ in queryset:
        time.sleep(0.05)
        tick()
        n += 1
    return n


class BumpJob(BatchJob):
    name = "tests-bump"
    chunk_size = 10
    retries = 1

    def get_queryset(self):
        from tests.batch.models import Row

        return Row.objects.all()

    def process(self, queryset):
        return bump_rows(queryset)


class FailingJob(BatchJob):
    name = "tests-failing"
    chunk_size = 10

    def get_queryset(self):
        from tests.batch.models import Row

        return Row.objects.all()

    def process(self, queryset):
        if os.environ.get("BATCH_TEST_HEAL") != "1" and queryset.filter(group=13).exists():
            raise ValueError("group 13 is cursed")
        return bump(queryset)


class LooseBumpJob(BumpJob):
    """BumpJob without the chunk transaction: at least once."""

    name = "tests-loose"
    atomic = False
