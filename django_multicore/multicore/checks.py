"""System checks for the MULTICORE setting and the databases workers use (ids in docs/checks.md)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from django.conf import settings as django_settings
from django.core import checks

from multicore import settings as multicore_settings


@checks.register("multicore")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001-E006: the MULTICORE value itself; E007, W001: what it asks of the environment."""
    user = getattr(django_settings, "MULTICORE", None) or {}
    found = multicore_settings.problems(user)
    if found:
        return found
    if user.get("drf-list-patch") and importlib.util.find_spec("rest_framework") is None:
        found.append(
            checks.Error(
                'MULTICORE["drf-list-patch"] is on but Django REST framework is not installed.',
                hint='Install djangorestframework, or set "drf-list-patch" to False.',
                id="multicore.E007",
            )
        )
    found.extend(_dask_problems(user))
    workers = user.get("workers")
    if workers is not None:
        from multicore._pool.lifecycle import usable_cpus

        cpus = usable_cpus()
        if workers > cpus:
            found.append(
                checks.Warning(
                    f'MULTICORE["workers"] is {workers} but this process may use only {cpus} CPU(s); '
                    "the extra workers compete for the same cores.",
                    hint=f'Leave "workers" out (None) to use every usable CPU, or set it to {cpus} or fewer.',
                    id="multicore.W001",
                )
            )
    return found


def _dask_problems(user: Any) -> list[checks.CheckMessage]:
    """E031, W030: what the dask backend needs (docs/dask.md)."""
    if user.get("backend") != "dask":
        return []
    found: list[checks.CheckMessage] = []
    missing = [name for name in ("dask", "distributed") if importlib.util.find_spec(name) is None]
    if missing:
        found.append(
            checks.Error(
                f'MULTICORE["backend"] is "dask" but {" and ".join(missing)} cannot be imported.',
                hint="pip install 'django-multicore[dask]'",
                id="multicore.E031",
            )
        )
    if not user.get("dask-address") and not os.environ.get("DASK_SCHEDULER_ADDRESS"):
        found.append(
            checks.Warning(
                'MULTICORE["backend"] is "dask" but no scheduler address is set: the first Task() '
                "will raise ConfigurationError.",
                hint='Set MULTICORE["dask-address"] (e.g. "tcp://scheduler:8786") or DASK_SCHEDULER_ADDRESS.',
                id="multicore.W030",
            )
        )
    return found


@checks.register(checks.Tags.database)
def check_databases(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W002: a database workers cannot reach (in-memory SQLite). Runs with ``--database`` and in tests."""
    if not databases:
        return []
    from django.db import connections

    from multicore.db.connections import in_memory_sqlite

    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is an in-memory SQLite database; multicore workers are other "
            "processes and see an empty database instead.",
            hint=f'Give it a file: DATABASES[{alias!r}]["TEST"] = {{"NAME": "test-db.sqlite3"}} for '
            "tests, or a file NAME. See docs/testing.md.",
            id="multicore.W002",
        )
        for alias in sorted(databases)
        if alias in connections and in_memory_sqlite(connections[alias].settings_dict)
    ]
