"""The ledger: one BatchRun per named job, one BatchChunk per planned primary-key range.

Chunks move pending -> running -> done | failed. ``done`` is set by the worker, inside the
chunk's own transaction when the job is atomic, and only if no other attempt marked it done
first: a straggler of a stopped run that finishes the same chunk rolls back instead. ``running``
(shown by ``runbatch --status``), ``failed`` and the error are written by the runner.
"""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class BatchRun(models.Model):
    PLANNED, RUNNING, DONE, FAILED, INTERRUPTED = "planned", "running", "done", "failed", "interrupted"
    STATUSES = [(s, s) for s in (PLANNED, RUNNING, DONE, FAILED, INTERRUPTED)]

    name = models.CharField(max_length=200, unique=True)
    fingerprint = models.CharField(max_length=64)
    description = models.TextField(blank=True)  # model, function and chunk size, for --status
    chunk_size = models.PositiveIntegerField()
    total_chunks = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=STATUSES, default=PLANNED)
    # "host:pid:starttime" of the runner holding the job, "" when none.
    owner = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "multicore_batch_run"

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class BatchChunk(models.Model):
    PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
    STATUSES = [(s, s) for s in (PENDING, RUNNING, DONE, FAILED)]

    run = models.ForeignKey(BatchRun, related_name="chunks", on_delete=models.CASCADE)
    index = models.PositiveIntegerField()
    # Primary-key bounds lo <= pk < hi, as JSON; null = open (the first lo, the last hi).
    lo = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    hi = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=8, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    rows = models.BigIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")  # the last error, with the worker's traceback
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "multicore_batch_chunk"
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="multicore_batch_chunk_run_index")]
        indexes = [models.Index(fields=["run", "status"], name="multicore_batch_chunk_status")]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.run_id} ({self.status})"
