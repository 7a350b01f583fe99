"""The original django-multicore's app module, kept so ``"multicore.app.MulticoreAppConfig"`` in
INSTALLED_APPS keeps working. New projects write ``"multicore"`` (docs/compatibility.md)."""

from multicore.apps import MulticoreConfig

__all__ = ["MulticoreAppConfig"]


class MulticoreAppConfig(MulticoreConfig):
    """The same app under the original's class name (it started workers in ``ready()``; this one
    starts the pool on first use, like :class:`~multicore.apps.MulticoreConfig`)."""

    default = False
