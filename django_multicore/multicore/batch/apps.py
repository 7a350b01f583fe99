"""The ``multicore.batch`` Django app (label ``multicore_batch``): the ledger models, the
``runbatch`` command, and a worker-start hook that records each worker's memory baseline."""

from __future__ import annotations

from django.apps import AppConfig


class BatchConfig(AppConfig):
    name = "multicore.batch"
    label = "multicore_batch"
    verbose_name = "Multicore batch jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from multicore import hooks
        from multicore.batch import worker

        hooks.on_worker_start(worker.record_baseline)
