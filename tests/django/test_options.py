"""One rule per option, three places that apply it: for every option, a value at each bound and
just outside it gets the same verdict from the system checks (``manage.py check``), from
``initialize()`` and, for the options the engine takes, from the engine itself (``_core.Pool``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

import multicore
from multicore import _core, options
from multicore.exceptions import ConfigurationError, SerializationError
from multicore.settings import KEYS

# The engine's parameters, and the cheapest value of each (a region of a few pages).
ENGINE = {
    "workers": 1,
    "slots": _core.MIN_SLOTS,
    "inline_size": _core.MIN_INLINE_SIZE,
    "worker_spin_us": 0,
    "parent_spin_us": 0,
    "max_payload": None,
    "segment_keep_bytes": 0,
}


def _edges(rule: options.Rule) -> list[Any]:
    if rule.kind == "bool":
        return [True, False, 1, "yes"]
    if rule.kind == "choice":
        return [*rule.choices, "other"]
    values: list[Any] = []
    if rule.minimum is not None:
        values += [rule.minimum - 1, rule.minimum]
        if rule.kind == "number":
            values.append(rule.minimum - 0.001)
    if rule.maximum is not None:
        values += [rule.maximum, rule.maximum + 1]
    return values


CASES = [(field, value) for field, rule in options.rules().items() for value in _edges(rule)]


def _check_accepts(field: str, value: Any) -> bool:
    key = next(k for k, f in KEYS.items() if f == field)
    with override_settings(MULTICORE={key: value}):
        return not [m for m in checks.run_checks(tags=["multicore"]) if m.is_serious()]


def _options_accept(field: str, value: Any) -> bool:
    try:
        options.validate(dataclasses.replace(options.Options(), **{field: value}))
    except ConfigurationError:
        return False
    return True


def _engine_accepts(field: str, value: Any) -> bool:
    value = options.coerce(field, value)[0]
    try:
        pool = _core.Pool(**{**ENGINE, field: value})
    except (ConfigurationError, SerializationError, TypeError, OverflowError):
        return False
    pool.shutdown(0.0)
    return True


@pytest.mark.parametrize("field, value", CASES, ids=[f"{f}={v!r}" for f, v in CASES])
def test_check_initialize_and_engine_agree(field, value):
    rule = options.rules()[field]
    verdict = _check_accepts(field, value)
    assert _options_accept(field, value) is verdict
    if rule.pool:
        # initialize() validates before it starts anything; only a refusal is cheap to observe.
        if not verdict:
            multicore.shutdown()
            with pytest.raises(ConfigurationError, match=field):
                multicore.initialize(**{field: value})
            assert multicore.pool_info()["running"] is False
        else:
            assert getattr(options.current(**{field: value}), field) == value
    if field in ENGINE:
        assert _engine_accepts(field, value) is verdict


def test_every_option_has_a_rule_and_a_default():
    for field in dataclasses.fields(options.Options):
        rule = field.metadata["rule"]
        assert rule.doc and options.problem(field.name, field.default) is None, field.name
    assert set(ENGINE) <= options.POOL_FIELDS


def test_the_engine_bounds_come_from_the_engine():
    rules = options.rules()
    assert (rules["workers"].minimum, rules["workers"].maximum) == (_core.MIN_WORKERS, _core.MAX_WORKERS)
    assert rules["worker_spin_us"].maximum == rules["parent_spin_us"].maximum == _core.MAX_SPIN_US
    assert (rules["slots"].minimum, rules["slots"].maximum) == (_core.MIN_SLOTS, _core.MAX_SLOTS)
    assert (rules["inline_size"].minimum, rules["inline_size"].maximum) == (
        _core.MIN_INLINE_SIZE,
        _core.MAX_INLINE_SIZE,
    )


def test_initialize_names_the_option_and_the_fix():
    with pytest.raises(ConfigurationError) as info:
        multicore.initialize(inline_size=32)
    assert str(info.value) == (
        "multicore option inline_size must be an integer from 64 to 1048576, got 32; "
        "use an integer from 64 to 1048576; the default is 3968"
    )
    assert isinstance(info.value, ValueError)
