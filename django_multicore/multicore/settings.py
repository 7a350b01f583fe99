"""Settings for multicore are all namespaced in the ``MULTICORE`` setting::

    MULTICORE = {
        "workers": 4,
        "max-load-average": 0.85,
    }

Read them with :func:`get_config`, which returns the defaults merged with the user's values
(sizes such as ``"512MB"`` already converted to bytes). It is cached, and the cache is cleared
when ``MULTICORE`` changes (``override_settings`` in tests).

Every key is documented in docs/settings.md. :func:`problems` validates a raw ``MULTICORE``
value; the system checks report its findings and :func:`get_config` raises
``ImproperlyConfigured`` for the errors, so a bad value is caught both by ``manage.py check``
and where checks never run (a gunicorn worker starting the pool).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # The pool (multicore.options.Options, read when the pool starts; "max-load-average" and
    # "timeout" are read by every Task()).
    "workers": None,
    "max-load-average": None,
    "timeout": None,
    "max-tasks-per-worker": None,
    "max-memory-per-worker": None,
    "slots": 256,
    "inline-size": 3968,
    "worker-spin-us": 200,
    "parent-spin-us": 50,
    "max-payload": None,
    "shutdown-grace": 2.0,
    # The Django integration.
    "drf-list-patch": False,
    "drf-min-items": 100,
    "drf-min-idle-cpus": 1,
    "in-atomic-block": "sequential",
}

#: Keys passed to the pool, as Options field names.
POOL_KEYS = {
    key: key.replace("-", "_")
    for key in (
        "workers", "max-load-average", "timeout", "max-tasks-per-worker", "max-memory-per-worker",
        "slots", "inline-size", "worker-spin-us", "parent-spin-us", "max-payload", "shutdown-grace",
    )
}

IN_ATOMIC_BLOCK_CHOICES = ("sequential", "raise")

# key -> (kind, minimum, may be None). Kinds: int, number, bytes (int or "512MB"), bool, choice.
_RULES: dict[str, tuple[str, float | None, bool]] = {
    "workers": ("int", 1, True),
    "max-load-average": ("number", 0, True),
    "timeout": ("number", 0, True),
    "max-tasks-per-worker": ("int", 1, True),
    "max-memory-per-worker": ("bytes", 1, True),
    "slots": ("int", 2, False),
    "inline-size": ("int", 1, False),
    "worker-spin-us": ("number", 0, False),
    "parent-spin-us": ("number", 0, False),
    "max-payload": ("bytes", 1, True),
    "shutdown-grace": ("number", 0, False),
    "drf-list-patch": ("bool", None, False),
    "drf-min-items": ("int", 0, False),
    "drf-min-idle-cpus": ("int", 0, False),
    "in-atomic-block": ("choice", None, False),
}

_EXAMPLES = {"int": "4", "number": "0.85", "bytes": '"512MB"', "bool": "True", "choice": '"sequential"'}
_EXPECTED = {
    "int": "an integer",
    "number": "a number",
    "bytes": 'a number of bytes (an integer, or a string such as "512MB")',
    "bool": "True or False",
}

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: str) -> int | None:
    """``"512MB"`` -> 536870912 (K, M, G, T are powers of 1024, with or without B/iB); None if unreadable."""
    match = _SIZE.match(value)
    if match is None:
        return None
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def problems(user: Any) -> list[checks.CheckMessage]:
    """Every problem with a raw ``MULTICORE`` value, as system check messages."""
    if not isinstance(user, Mapping):
        return [checks.Error(
            f"MULTICORE must be a dict, got {type(user).__name__}: {user!r:.80}",
            hint='Write it as a dict with hyphenated keys, e.g. MULTICORE = {"workers": 4}.',
            id="multicore.E001",
        )]
    found: list[checks.CheckMessage] = []
    for key, value in user.items():
        if key not in DEFAULTS:
            found.append(_unknown_key(key))
        else:
            found.extend(_check_value(key, value))
    return found


def _unknown_key(key: Any) -> checks.Error:
    spelled = key.replace("_", "-").lower() if isinstance(key, str) else None
    if spelled in DEFAULTS:
        hint = f'Keys are hyphenated: write "{spelled}".'
    else:
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = (f'Did you mean "{close[0]}"? ' if close else "") + f"Valid keys: {', '.join(DEFAULTS)}."
    return checks.Error(f"MULTICORE has an unknown key {key!r}.", hint=hint, id="multicore.E002")


def _check_value(key: str, value: Any) -> list[checks.CheckMessage]:
    kind, minimum, nullable = _RULES[key]
    default = DEFAULTS[key]
    if value is None and nullable:
        return []
    if kind == "choice":
        if value in IN_ATOMIC_BLOCK_CHOICES:
            return []
        return [checks.Error(
            f"MULTICORE[{key!r}] must be one of {', '.join(map(repr, IN_ATOMIC_BLOCK_CHOICES))}, got {value!r}.",
            hint='"sequential" warns and lets helpers take the sequential path; "raise" raises '
                 "TransactionManagementError. See docs/database.md.",
            id="multicore.E005",
        )]
    if kind == "bytes" and isinstance(value, str):
        parsed = parse_size(value)
        if parsed is None:
            return [checks.Error(
                f"MULTICORE[{key!r}] is not a size: {value!r}.",
                hint=f'Write a number of bytes (536870912) or a size such as "512MB", "1.5GB", "800KiB"'
                     f"{', or None' if nullable else ''}.",
                id="multicore.E006",
            )]
        value = parsed
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        return [checks.Error(
            f"MULTICORE[{key!r}] must be {_EXPECTED[kind]}{' or None' if nullable else ''}, "
            f"got {type(value).__name__}: {value!r:.80}.",
            hint=f"Write e.g. MULTICORE = {{{key!r}: {_EXAMPLES[kind]}}}, or leave it out for the default ({default!r}).",
            id="multicore.E003",
        )]
    if minimum is not None and value < minimum:
        least = {0: "zero or more", 1: "positive"}.get(minimum, f"at least {minimum}")
        return [checks.Error(
            f"MULTICORE[{key!r}] must be {least}, got {value!r}.",
            hint=f"Use a value >= {minimum}{', or None' if nullable else ''}; the default is {default!r}.",
            id="multicore.E004",
        )]
    return []


@functools.cache
def get_config() -> Mapping[str, Any]:
    """The effective settings: DEFAULTS updated with ``settings.MULTICORE``, validated.

    Raises ImproperlyConfigured naming every bad value (the same findings as the system checks).
    """
    user = getattr(django_settings, "MULTICORE", None) or {}
    errors = [m for m in problems(user) if m.is_serious()]
    if errors:
        raise ImproperlyConfigured(
            "Invalid MULTICORE setting:\n" + "\n".join(f"  {m.id}: {m.msg} HINT: {m.hint}" for m in errors)
        )
    config = {**DEFAULTS, **user}
    for key, (kind, _, _) in _RULES.items():
        if kind == "bytes" and isinstance(config[key], str):
            config[key] = parse_size(config[key])
    return MappingProxyType(config)


@functools.cache
def pool_options() -> dict[str, Any]:
    """The pool's part of the settings, as ``multicore.options.Options`` keywords.

    Cached like get_config(): one mapping until MULTICORE changes, so the options built from it
    are cached too (every Task() asks for them).
    """
    config = get_config()
    return {field: config[key] for key, field in POOL_KEYS.items()}


def drf_patch_requested() -> bool:
    """True when ``"drf-list-patch"`` is set to True (read raw: a bad value is left to the checks)."""
    user = getattr(django_settings, "MULTICORE", None)
    return isinstance(user, Mapping) and user.get("drf-list-patch") is True


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "MULTICORE":
        get_config.cache_clear()
        pool_options.cache_clear()


setting_changed.connect(_reload)
