"""The ``multicore`` Django app: add ``"multicore"`` to INSTALLED_APPS."""

from __future__ import annotations

import importlib.util

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured

from multicore._pool.lifecycle import warm_up  # noqa: F401 - documented here before it moved to multicore.warm_up


class MulticoreConfig(AppConfig):
    """Connects multicore to Django. Starts no workers: the pool starts on the first ``Task()``
    of each process (so ``migrate``, ``check`` and a server's master process hold none), or
    with :func:`warm_up`."""

    name = "multicore"
    label = "multicore"
    verbose_name = "Multicore"

    def ready(self) -> None:
        from multicore import checks  # noqa: F401 - importing it registers the checks
        from multicore import settings as multicore_settings
        from multicore.db import connections

        multicore_settings.install()
        connections.install()
        # A bad MULTICORE value must not break start-up here: the checks report it with a hint.
        if multicore_settings.drf_patch_requested() and importlib.util.find_spec("rest_framework"):
            try:
                from multicore import drf
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f'MULTICORE["drf-list-patch"] is on but multicore.drf could not be imported: {exc}'
                ) from exc
            drf.patch()
