"""Batch functions and jobs the dask batch tests run. What they need travels in their attributes:
a dask worker does not inherit the test's environment, as a forked local worker does."""

from __future__ import annotations

import os
import time

from tests.batch.tasks import BumpJob, bump
from tests.dask.helpers import append_line


class DieOnRow:
    """os._exit(9) in the chunk holding row ``pk``: only the first time when ``marker`` is given
    (the marker file records the pid that died), every time otherwise."""

    def __init__(self, pk, marker=None):
        self.pk = pk
        self.marker = marker

    def __call__(self, queryset):
        if queryset.filter(pk=self.pk).exists() and not (self.marker and os.path.exists(self.marker)):
            if self.marker:
                append_line(self.marker, str(os.getpid()))
            os._exit(9)
        return bump(queryset)


class SleepOnRow:
    """Sleeps a minute in the chunk holding row ``pk``, the first time (the marker file records it)."""

    def __init__(self, pk, marker):
        self.pk = pk
        self.marker = marker

    def __call__(self, queryset):
        if queryset.filter(pk=self.pk).exists() and not os.path.exists(self.marker):
            append_line(self.marker, str(os.getpid()))
            time.sleep(60)
        return bump(queryset)


class SlowBumpJob(BumpJob):
    """BumpJob (10 rows a chunk) with a pause after each row: slow enough to interrupt."""

    name = "tests-dask-bump"
    delay = 0.02

    def process(self, queryset):
        n = 0
        for row in queryset:
            row.counter += 1
            row.save(update_fields=["counter"])
            n += 1
            time.sleep(self.delay)
        return n


class VerySlowBumpJob(SlowBumpJob):
    """3 s a chunk: a second Ctrl-C lands while chunks run."""

    delay = 0.3
