"""Resumable batch jobs over big querysets, on every core (docs/batch.md).

Add ``"multicore.batch"`` to INSTALLED_APPS (after ``"multicore"``) and ``migrate``: that creates
the ledger. Then ``run_batch(queryset, fn, name=...)``, a :class:`BatchJob` subclass, or
``manage.py runbatch``.

Django imports this package to find the app before models can be loaded, so the names that
need models are imported on first use.
"""

from __future__ import annotations

from typing import Any

from multicore.batch.errors import BatchError, BatchFailedError, BatchLockedError, BatchPlanChangedError
from multicore.batch.jobs import BatchJob
from multicore.batch.worker import tick

__all__ = [
    "run_batch",
    "BatchJob",
    "BatchReport",
    "BatchError",
    "BatchFailedError",
    "BatchLockedError",
    "BatchPlanChangedError",
    "tick",
]


def __getattr__(name: str) -> Any:
    if name in ("run_batch", "BatchReport"):
        from multicore.batch import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'multicore.batch' has no attribute {name!r}")
