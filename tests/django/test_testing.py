"""multicore.testing: workers use the test database under pytest-django and Django's runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import multicore
from tests.support import ROOT, run_python
from tests.testapp import tasks
from tests.testapp.models import Item


def test_pool_started_before_the_test_database_is_restarted_on_the_next_task():
    run_python(
        """
        import django
        django.setup()
        from django.db import connection
        import multicore
        from tests.testapp import tasks
        from tests.testapp.models import Item

        multicore.initialize()  # workers forked with the non-test database settings
        old_supervisor = multicore.pool_info()["supervisor_pid"]
        original = connection.creation.create_test_db(verbosity=0, autoclobber=True)
        try:
            Item.objects.bulk_create(Item(name=str(i)) for i in range(7))
            task = multicore.Task()
            task.run(tasks.database_name)
            task.run(tasks.count_items)
            assert task.get(timeout=30) == [str(connection.settings_dict["NAME"]), 7]
            assert multicore.pool_info()["supervisor_pid"] != old_supervisor
        finally:
            multicore.shutdown()  # PostgreSQL refuses to drop a database with open sessions
            connection.creation.destroy_test_db(original, verbosity=0)
        task = multicore.Task()  # back on the original database: restarted again
        task.run(tasks.database_name)
        assert task.get(timeout=30) == [original]
        print("ok")
    """,
        timeout=90,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings"},
    )


def test_in_memory_sqlite_warns_when_the_pool_starts():
    proc = run_python("""
        import warnings
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["multicore"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        import django
        django.setup()
        import multicore
        from multicore.exceptions import MulticoreWarning
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = multicore.Task()
        assert task is not None
        assert [w.category for w in caught] == [MulticoreWarning], caught
        print(caught[0].message)
        multicore.shutdown()
    """)
    assert "in-memory SQLite" in proc.stdout and "TEST" in proc.stdout


@pytest.mark.django_db(transaction=True)
def test_pool_started_while_pytest_blocked_database_access_is_restarted(django_db_blocker, multicore_db):
    Item.objects.create(name="visible")
    multicore.shutdown()
    with django_db_blocker.block():
        multicore.initialize()  # these workers could never open a connection
    blocked_supervisor = multicore.pool_info()["supervisor_pid"]
    task = multicore.Task()
    task.run(tasks.count_items)
    assert task.get(timeout=30) == [1]
    assert multicore.pool_info()["supervisor_pid"] != blocked_supervisor


def test_django_test_runner_with_multicore_runner():
    env = {**os.environ, "PYTHONPATH": ROOT, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "test",
            "tests.django.runner_cases",
            "-v",
            "2",
            "--testrunner",
            "multicore.testing.DiscoverRunner",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ran 1 test" in proc.stderr and "\nOK\n" in proc.stderr
    assert "Destroying test database" in proc.stderr and "Error" not in proc.stderr


def test_pytest_plugin_fixture_in_a_user_project(tmp_path):
    """A user's suite: `pytest_plugins = ["multicore.testing"]` and the multicore_db fixture.
    The session ends cleanly even on PostgreSQL, whose DROP DATABASE fails while workers
    hold connections."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["multicore.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        import multicore
        from tests.testapp import tasks
        from tests.testapp.models import Item

        def test_workers_see_rows(multicore_db):
            Item.objects.create(name="a")
            task = multicore.Task()
            for _ in range(4):
                task.run(tasks.count_items)
            assert task.get(timeout=30) == [1] * 4
    """)
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout and "error" not in proc.stdout.lower()
