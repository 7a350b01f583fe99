"""``BatchJob``: the class form of a batch, which ``manage.py runbatch`` finds by dotted path or
by name (it imports each installed app's ``batches`` module, like the admin's ``admin``)."""

from __future__ import annotations

from typing import Any, ClassVar

from multicore.exceptions import ConfigurationError

_registry: dict[str, type[BatchJob]] = {}


class BatchJob:
    """Subclass it, set ``name`` and the options, and define ``get_queryset()`` and ``process()``::

        class Reindex(BatchJob):
            name = "reindex-2026-11"; chunk_size = 500; retries = 2
            def get_queryset(self): return Document.objects.filter(stale=True)
            def process(self, queryset): ...   # in a worker; returns the row count or None

    ``process`` runs in pool workers: the instance is pickled to them, so keep its attributes
    picklable and its class importable (define it at module level).
    """

    name: ClassVar[str | None] = None
    chunk_size: ClassVar[int] = 1000
    retries: ClassVar[int] = 0
    timeout: ClassVar[float | None] = None
    atomic: ClassVar[bool] = True
    max_memory_per_worker: ClassVar[int | str | None] = None
    progress_interval: ClassVar[float] = 10
    workers: ClassVar[int | None] = None
    backend: ClassVar[str | None] = None  # "local" or "dask"; None: the configured backend

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _registry[cls.name] = cls  # type: ignore[index]

    def get_queryset(self) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define get_queryset()")

    def process(self, queryset: Any) -> int | None:
        raise NotImplementedError(f"{type(self).__qualname__} must define process(queryset)")

    def run(self, **overrides: Any) -> Any:
        """``run_batch()`` with this job's settings; keywords override them (``restart=True``,
        ``progress="log"``, ``workers=4``, ``backend="dask"``...)."""
        from multicore.batch.runner import run_batch

        options: dict[str, Any] = {
            "name": self.name,
            "chunk_size": self.chunk_size,
            "retries": self.retries,
            "timeout": self.timeout,
            "atomic": self.atomic,
            "max_memory_per_worker": self.max_memory_per_worker,
            "progress_interval": self.progress_interval,
            "workers": self.workers,
            "backend": self.backend,
        }
        options.update({k: v for k, v in overrides.items() if v is not None})
        return run_batch(self.get_queryset(), self.process, **options)


def find(reference: str) -> type[BatchJob]:
    """The BatchJob class at a dotted path, or registered under a job name."""
    from django.utils.module_loading import autodiscover_modules, import_string

    if "." in reference and not reference.startswith("."):
        try:
            found = import_string(reference)
        except ImportError:
            found = None
        if isinstance(found, type) and issubclass(found, BatchJob):
            return found
        if found is not None:
            raise ConfigurationError(f"{reference} is not a multicore.batch.BatchJob subclass")
    autodiscover_modules("batches")
    if reference in _registry:
        return _registry[reference]
    known = ", ".join(sorted(_registry)) or "none found in the installed apps' batches modules"
    raise ConfigurationError(
        f"unknown batch job {reference!r}: give the dotted path of a BatchJob subclass "
        f"(myapp.batches.Reindex) or the name of one (known: {known})"
    )
