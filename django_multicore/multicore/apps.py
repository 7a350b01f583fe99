"""The ``multicore`` Django app: add ``"multicore"`` to INSTALLED_APPS."""

from __future__ import annotations

import importlib.util

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class MulticoreConfig(AppConfig):
    """Connects multicore to Django. Starts no workers: the pool starts on the first ``Task()``
    of each process (so ``migrate``, ``check`` and a server's master process hold none), or
    with :func:`warm_up`."""

    name = "multicore"
    label = "multicore"
    verbose_name = "Multicore"

    def ready(self) -> None:
        from multicore import _django, _options, checks  # noqa: F401 - checks registers itself
        from multicore import settings as multicore_settings

        _options.set_provider(_django.options_provider)
        _django.install()
        # A bad MULTICORE value must not break start-up here: the checks report it with a hint.
        if multicore_settings.drf_patch_requested() and importlib.util.find_spec("rest_framework"):
            try:
                from multicore import drf
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f'MULTICORE["drf-list-patch"] is on but multicore.drf could not be imported: {exc}'
                ) from exc
            drf.patch()


def warm_up(timeout: float = 10.0) -> bool:
    """Starts this process's pool now instead of on the first ``Task()``, and waits up to
    ``timeout`` seconds for its workers (see :func:`multicore.wsgi.warm_up`).

    Call it where a server process starts serving (a gunicorn ``post_fork`` hook, the end of
    ``wsgi.py`` without ``preload_app``) so the first request does not pay for the fork. Not in
    a process that forks servers afterwards: each process needs its own pool.
    """
    from multicore import wsgi

    return wsgi.warm_up(timeout)
