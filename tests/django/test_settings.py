"""The MULTICORE setting: defaults, the cached accessor, and validation where checks don't run."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import multicore
from multicore import options as _options
from multicore.settings import DEFAULTS, KEYS, InvalidSettingError, get_config, parse_size
from tests.support import ROOT


def test_every_key_is_an_option_spelled_with_hyphens():
    assert set(KEYS.values()) == _options.FIELDS
    for key, field in KEYS.items():
        assert key == field.replace("_", "-")
        assert DEFAULTS[key] == getattr(_options.Options(), field), key


def test_settings_reach_the_pool_options_with_sizes_in_bytes():
    with override_settings(MULTICORE={"workers": 3, "max-memory-per-worker": "512MB", "max-load-average": 0.85}):
        options = _options.current()
        assert (options.workers, options.max_memory_per_worker, options.max_load_average) == (3, 512 * 1024**2, 0.85)
        assert get_config()["max-memory-per-worker"] == 512 * 1024**2
        assert get_config()["max-payload"] is None


def test_options_are_cached_and_rebuilt_when_the_setting_changes():
    assert _options.current() is _options.current()
    before = _options.current()
    with override_settings(MULTICORE={"drf-min-items": 7}):
        assert get_config()["drf-min-items"] == 7
        assert get_config()["in-atomic-block"] == "sequential"  # defaults fill the rest
        assert _options.current() is not before
    assert get_config()["drf-min-items"] == 80
    assert _options.current() is not before  # rebuilt after each change


@pytest.mark.parametrize(
    "text, size",
    [("512MB", 512 * 1024**2), ("1.5 GB", int(1.5 * 1024**3)), ("800KiB", 800 * 1024), ("42", 42), ("2g", 2 * 1024**3)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_bad_settings_raise_improperly_configured_when_the_pool_starts():
    """Where no system checks run (gunicorn), the first Task() reports the problem."""
    multicore.shutdown()
    with override_settings(MULTICORE={"workers": -1, "max_load_average": 1}):
        with pytest.raises(ImproperlyConfigured) as info:
            multicore.Task()
        assert isinstance(info.value, InvalidSettingError)  # also a multicore ConfigurationError
        text = str(info.value)
        assert "multicore.E004" in text and "'workers'" in text
        assert "multicore.E002" in text and 'write "max-load-average"' in text
    assert multicore.pool_info()["running"] is False


def test_max_load_average_from_settings_makes_task_refuse():
    with override_settings(MULTICORE={"max-load-average": 0.0}):
        # A load of exactly zero is rare on a machine running a test suite, but possible.
        load = os.getloadavg()[0]
        if load > 0:
            assert multicore.Task() is None
    with override_settings(MULTICORE={"max-load-average": None}):
        assert multicore.Task() is not None


def test_every_key_and_check_id_is_documented():
    with open(os.path.join(ROOT, "docs", "settings.md")) as f:
        settings_doc = f.read()
    with open(os.path.join(ROOT, "docs", "checks.md")) as f:
        checks_doc = f.read()
    for key in DEFAULTS:
        assert f'`"{key}"`' in settings_doc, key
    for check_id in [f"multicore.E00{i}" for i in range(1, 8)] + ["multicore.W001", "multicore.W002"]:
        assert check_id in checks_doc, check_id
