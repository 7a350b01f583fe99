"""The ``MULTICORE`` setting: the options of ``multicore.options`` spelled with hyphens::

    MULTICORE = {
        "workers": 4,
        "max-load-average": 0.85,
    }

This module only maps the spellings (``"max-load-average"`` <-> ``max_load_average``) and reads
``settings.MULTICORE``; defaults and rules live in :class:`multicore.options.Options`.
:func:`problems` turns the rules' findings into system check messages (ids in docs/checks.md);
the same findings raise :class:`InvalidSettingError` where checks never run (a gunicorn worker
starting the pool). Every key is documented in docs/settings.md.

:func:`get_config` returns the effective settings (sizes such as ``"512MB"`` in bytes). It reads
the options that ``multicore.options`` caches, rebuilt when ``MULTICORE`` changes
(``override_settings`` in tests).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from multicore import options
from multicore.exceptions import ConfigurationError

__all__ = ["DEFAULTS", "KEYS", "InvalidSettingError", "get_config", "problems", "parse_size", "drf_patch_requested"]

#: Setting key -> Options field.
KEYS: Mapping[str, str] = {field.replace("_", "-"): field for field in options.rules()}
#: Setting key -> default.
DEFAULTS: Mapping[str, Any] = {key: options.DEFAULTS[field] for key, field in KEYS.items()}

parse_size = options.parse_size

# Check id per kind of problem (docs/checks.md).
_IDS = {
    "type": "multicore.E003",
    "range": "multicore.E004",
    "choice": "multicore.E005",
    "size": "multicore.E006",
    "address": "multicore.E030",
}
_EXAMPLES = {"int": "4", "number": "0.85", "bytes": '"512MB"', "bool": "True"}


class InvalidSettingError(ConfigurationError, ImproperlyConfigured):
    """``MULTICORE`` has a bad value; the message lists the check ids and hints."""


def problems(user: Any) -> list[checks.CheckMessage]:
    """Every problem with a raw ``MULTICORE`` value, as system check messages."""
    if not isinstance(user, Mapping):
        return [
            checks.Error(
                f"MULTICORE must be a dict, got {type(user).__name__}: {user!r:.80}",
                hint='Write it as a dict with hyphenated keys, e.g. MULTICORE = {"workers": 4}.',
                id="multicore.E001",
            )
        ]
    found: list[checks.CheckMessage] = []
    for key, value in user.items():
        field = KEYS.get(key)
        if field is None:
            found.append(_unknown_key(key))
        elif (bad := options.problem(field, value)) is not None:
            found.append(_check_message(key, bad))
    return found


def _unknown_key(key: Any) -> checks.Error:
    spelled = key.replace("_", "-").lower() if isinstance(key, str) else None
    if spelled in KEYS:
        hint = f'Keys are hyphenated: write "{spelled}".'
    else:
        close = difflib.get_close_matches(str(key), KEYS, n=1)
        hint = (f'Did you mean "{close[0]}"? ' if close else "") + f"Valid keys: {', '.join(KEYS)}."
    return checks.Error(f"MULTICORE has an unknown key {key!r}.", hint=hint, id="multicore.E002")


def _check_message(key: str, bad: options.Problem) -> checks.Error:
    hint = bad.fix()
    hint = hint[0].upper() + hint[1:] + "."
    if bad.code == "type" and bad.rule.kind in _EXAMPLES:
        hint += f" E.g. MULTICORE = {{{key!r}: {_EXAMPLES[bad.rule.kind]}}}, or leave the key out."
    elif bad.code == "choice" and key == "in-atomic-block":
        hint += (
            ' "sequential" warns and lets helpers take the sequential path; "raise" raises'
            " TransactionManagementError. See docs/database.md."
        )
    elif key in ("backend", "dask-address"):
        hint += ' "dask" runs calls on a Dask cluster at "dask-address"; see docs/dask.md.'

    return checks.Error(bad.message(f"MULTICORE[{key!r}]") + ".", hint=hint, id=_IDS[bad.code])


def _user_setting() -> object:
    return getattr(django_settings, "MULTICORE", None)


def _as_options(user: object) -> Mapping[str, Any]:
    """``MULTICORE`` as Options keywords; raises InvalidSettingError with every problem found."""
    user = user or {}
    errors = [m for m in problems(user) if m.is_serious()]
    if errors:
        raise InvalidSettingError(
            "Invalid MULTICORE setting:\n" + "\n".join(f"  {m.id}: {m.msg} HINT: {m.hint}" for m in errors)
        )
    assert isinstance(user, Mapping)
    return {KEYS[key]: value for key, value in user.items()}


def install() -> None:
    """Makes ``settings.MULTICORE`` the source of the pool's options (the app's ``ready()``; idempotent).

    The options built from it are cached in ``multicore.options`` on the identity of the
    ``MULTICORE`` value, so ``override_settings`` (a new value) is seen at once.
    """
    options.set_provider(_user_setting, _as_options)


def get_config() -> Mapping[str, Any]:
    """The effective settings: every key with its default or configured value, validated.

    Raises :class:`InvalidSettingError` (an ``ImproperlyConfigured``) naming every bad value
    (the same findings as the system checks).
    """
    install()  # normally done by the app's ready(); idempotent
    values = options.current()
    return MappingProxyType({key: getattr(values, field) for key, field in KEYS.items()})


def drf_patch_requested() -> bool:
    """True when ``"drf-list-patch"`` is set to True (read raw: a bad value is left to the checks)."""
    user = _user_setting()
    return isinstance(user, Mapping) and user.get("drf-list-patch") is True
