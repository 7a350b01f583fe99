"""The errors of multicore.batch; each is a MulticoreError."""

from __future__ import annotations

from multicore.exceptions import MulticoreError


class BatchError(MulticoreError):
    """Base class of the batch errors."""


class BatchFailedError(BatchError):
    """``BatchReport.raise_for_failures()``: some chunks failed after their retries."""

    def __init__(self, message: str, failures: list[tuple[int, str]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []

    def __reduce__(self):
        return (BatchFailedError, (self.args[0], self.failures))


class BatchLockedError(BatchError):
    """Another runner is working on a batch job of the same name."""


class BatchPlanChangedError(BatchError):
    """The ledger of a named job was planned for another queryset, chunk size or function."""
