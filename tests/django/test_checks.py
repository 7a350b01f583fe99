"""One test per system check id (docs/checks.md), and `manage.py check` failing on a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.core import checks
from django.test import override_settings

from multicore.checks import check_databases, check_settings
from tests.support import ROOT


def _ids(multicore_setting):
    with override_settings(MULTICORE=multicore_setting):
        return [(m.id, m) for m in check_settings()]


def _only(multicore_setting, check_id, level=checks.ERROR):
    found = _ids(multicore_setting)
    assert [i for i, _ in found] == [check_id], found
    message = found[0][1]
    assert message.level == level and message.hint
    return message


def test_valid_settings_pass():
    assert (
        _ids(
            {
                "workers": 1,
                "max-load-average": 0.85,
                "timeout": 30,
                "max-memory-per-worker": "1GB",
                "max-tasks-per-worker": 100,
                "drf-list-patch": True,
                "in-atomic-block": "raise",
            }
        )
        == []
    )


def test_e001_not_a_dict():
    message = _only([("workers", 2)], "multicore.E001")
    assert "must be a dict" in message.msg


def test_e002_unknown_key_suggests_the_right_one():
    assert 'write "max-load-average"' in _only({"max_load_average": 1}, "multicore.E002").hint
    assert '"timeout"' in _only({"timeuot": 3}, "multicore.E002").hint


@pytest.mark.parametrize(
    "key, value",
    [
        ("workers", "4"),
        ("workers", 2.5),
        ("timeout", True),
        ("drf-list-patch", 1),
        ("slots", None),
        ("max-memory-per-worker", [1]),
        ("worker-conn-max-age", "60"),
    ],
)
def test_e003_wrong_type(key, value):
    message = _only({key: value}, "multicore.E003")
    assert repr(key) in message.msg and key in message.hint


@pytest.mark.parametrize(
    "key, value",
    [
        ("workers", 0),
        ("max-load-average", -0.5),
        ("timeout", -1),
        ("slots", 1),
        ("drf-min-items", -3),
        ("max-memory-per-worker", 0),
        ("worker-conn-max-age", -1),
    ],
)
def test_e004_out_of_range(key, value):
    assert repr(value) in _only({key: value}, "multicore.E004").msg


def test_e005_bad_choice():
    assert "'sequential', 'raise'" in _only({"in-atomic-block": "ignore"}, "multicore.E005").msg


def test_e006_unreadable_size():
    assert "512MB" in _only({"max-memory-per-worker": "lots"}, "multicore.E006").hint


def test_e007_drf_patch_without_drf(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rest_framework" else real(name, *a)
    )
    _only({"drf-list-patch": True}, "multicore.E007")


def test_w001_more_workers_than_cpus():
    from multicore._pool.lifecycle import usable_cpus

    _only({"workers": usable_cpus() + 1}, "multicore.W001", level=checks.WARNING)


def test_w002_in_memory_sqlite_database():
    from django.db import connections

    db = connections.settings["default"]
    memory = {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:memorydb_default?mode=memory&cache=shared"}
    saved = {k: db[k] for k in memory}
    db.update(memory)
    try:
        found = check_databases(databases=["default"])
        assert check_databases(databases=None) == []  # only with --database, and in the test runner
    finally:
        db.update(saved)
    assert [m.id for m in found] == ["multicore.W002"] and "TEST" in found[0].hint


def test_manage_py_check_fails_with_a_clear_message(tmp_path):
    (tmp_path / "bad_settings.py").write_text(
        textwrap.dedent("""
        from tests.settings import *
        MULTICORE = {"workers": "four", "max_tasks_per_worker": 10, "inline-size": 32}
    """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT]), "DJANGO_SETTINGS_MODULE": "bad_settings"}
    proc = subprocess.run(
        [sys.executable, "-m", "django", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "multicore.E003" in proc.stderr and "MULTICORE['workers'] must be an integer" in proc.stderr
    assert "multicore.E002" in proc.stderr and 'write "max-tasks-per-worker"' in proc.stderr
    # The engine's own bound (the pool would refuse it at its start): refused here, with the range.
    assert "MULTICORE['inline-size'] must be an integer from 64 to 1048576, got 32" in proc.stderr
    assert "Use an integer from 64 to 1048576; the default is 3968" in proc.stderr
    assert "Traceback" not in proc.stderr
