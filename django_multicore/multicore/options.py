"""Pool options: one table of defaults, overridable by ``initialize()`` keywords or a provider.

The Django app installs a provider that reads ``settings.MULTICORE``; without Django the
defaults apply. Keyword names are the Python spelling of the settings keys
(``max_load_average`` for ``"max-load-average"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Options:
    #: Worker processes; None = the CPUs this process may use (affinity and cgroup quota).
    workers: int | None = None
    #: Per-core 1-minute load average above which Task() returns None; None = never refuse.
    max_load_average: float | None = None
    #: Default timeout of Task.get(), seconds; None = wait as long as it takes.
    timeout: float | None = None
    #: Replace a worker after it ran this many calls (between calls); None = never.
    max_tasks_per_worker: int | None = None
    #: Replace a worker whose resident memory exceeds this many bytes after a call; None = never.
    max_memory_per_worker: int | None = None
    #: Calls in flight at once (shared-memory slots); run() waits for capacity beyond this.
    slots: int = 256
    #: Bytes of a request or result kept inside its slot; bigger ones use recycled segments.
    inline_size: int = 3968
    #: How long an idle worker spins for new work before sleeping, microseconds.
    worker_spin_us: int = 200
    #: How long get() spins for a result before sleeping, microseconds.
    parent_spin_us: int = 50
    #: Largest payload either way, bytes; None = limited by memory only.
    max_payload: int | None = None
    #: Seconds shutdown() lets running calls finish before killing their workers.
    shutdown_grace: float = 2.0


FIELDS = {f.name for f in dataclasses.fields(Options)}

_provider: Callable[[], Mapping[str, Any]] | None = None


# (mapping the provider returned, Options built from it): every Task() asks for the options, and
# building and validating them costs more than a whole call's transport.
_cache: tuple[Any, Options] | None = None


def set_provider(provider: Callable[[], Mapping[str, Any]] | None) -> None:
    """Installs the source of configured options (the Django app's settings reader).

    The provider should return the same mapping object until the configuration changes: the
    options built from it are cached on its identity.
    """
    global _provider, _cache
    _provider, _cache = provider, None


def current(**overrides: Any) -> Options:
    """The configured options, with ``overrides`` (initialize() keywords) applied last."""
    global _cache
    unknown = set(overrides) - FIELDS
    if unknown:
        raise TypeError(
            f"unknown multicore option(s) {', '.join(sorted(unknown))}; "
            f"valid options are {', '.join(sorted(FIELDS))}"
        )
    configured = _provider() if _provider is not None else None
    explicit = {k: v for k, v in overrides.items() if v is not None}
    cache = _cache
    if not explicit and cache is not None and cache[0] is configured:
        return cache[1]
    values: dict[str, Any] = dict(configured or {})
    values.update(explicit)
    options = validate(Options(**values))
    if not explicit:
        _cache = (configured, options)
    return options


def validate(options: Options) -> Options:
    """Raises ValueError naming the option and the fix for any out-of-range value."""

    def positive_int(name: str, value: Any, allow_none: bool = True) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"multicore option {name} must be a positive integer, got {value!r}")

    def non_negative(name: str, value: Any, allow_none: bool = True) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"multicore option {name} must be a number >= 0, got {value!r}")

    positive_int("workers", options.workers)
    positive_int("max_tasks_per_worker", options.max_tasks_per_worker)
    positive_int("max_memory_per_worker", options.max_memory_per_worker)
    positive_int("max_payload", options.max_payload)
    positive_int("slots", options.slots, allow_none=False)
    positive_int("inline_size", options.inline_size, allow_none=False)
    non_negative("max_load_average", options.max_load_average)
    non_negative("timeout", options.timeout)
    non_negative("worker_spin_us", options.worker_spin_us, allow_none=False)
    non_negative("parent_spin_us", options.parent_spin_us, allow_none=False)
    non_negative("shutdown_grace", options.shutdown_grace, allow_none=False)
    if options.slots < 2:
        raise ValueError("multicore option slots must be at least 2")
    return options
