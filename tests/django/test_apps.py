"""The app: lazy per-process pools (migrate, check, runserver's autoreloader), warm_up(); the DRF switch is in tests/drf/test_patch.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from django.db import connection
from django.test import override_settings

import multicore
from tests.support import ROOT, pid_alive, run_python, wait_until, worker_pids


def _settings_module(tmp_path, extra=""):
    """A settings module on a private SQLite file, importable as ``tmp_settings``."""
    (tmp_path / "tmp_settings.py").write_text(
        textwrap.dedent(f"""
        import os
        from tests.settings import *
        if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            DATABASES["default"]["NAME"] = {str(tmp_path / "db.sqlite3")!r}
    """)
        + textwrap.dedent(extra)
    )
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT]), "DJANGO_SETTINGS_MODULE": "tmp_settings"}


def _connection_in_worker() -> tuple[bool, int]:
    from django.db import connection

    return connection.connection is None, connection.cursor().execute("SELECT 1").fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_ready_connects_the_settings_and_the_database(multicore_db):
    """The app makes MULTICORE the pool's options, and gives each worker its own connection."""
    connection.ensure_connection()  # the parent's open connection, inherited by the fork
    multicore.shutdown()
    with override_settings(MULTICORE={"workers": 1, "slots": 64}):
        task = multicore.Task()
        task.run(_connection_in_worker)
        assert task.get(timeout=30) == [(True, 1)]  # a fresh wrapper, which then connects itself
        assert multicore.pool_info()["slots"] == 64
    multicore.shutdown()
    assert connection.cursor().execute("SELECT 1").fetchone()[0] == 1  # the parent's session is intact


def test_migrate_and_check_start_no_workers(tmp_path):
    run_python(
        """
        import os, django
        django.setup()
        from django.core.management import call_command
        import multicore
        call_command("check")
        call_command("migrate", verbosity=0)
        assert multicore.pool_info()["running"] is False
        children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
        assert children == [], children
        print("no pool")
    """,
        env=_settings_module(tmp_path),
    )


def test_warm_up_starts_the_pool_once():
    from multicore.apps import warm_up

    multicore.shutdown()
    try:
        warm_up()
        assert wait_until(lambda: len(worker_pids()) == 2)
        supervisor = multicore.pool_info()["supervisor_pid"]
        warm_up()
        assert multicore.pool_info()["supervisor_pid"] == supervisor
    finally:
        multicore.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (by /proc/*/stat, whichever thread forked them)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return sorted(found)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_runserver_autoreload_leaves_exactly_one_pool(tmp_path):
    env = {**os.environ, **_settings_module(tmp_path)}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/pool/"
    try:
        first = _wait_for_server(url, server)
        # The autoreloader process (server.pid) serves nothing and holds no pool.
        assert _children(server.pid) == [first["pid"]]
        assert _children(first["pid"]) == [first["supervisor_pid"]]
        assert first["worker_pid"] in _children(first["supervisor_pid"])
        again = _get(url)  # another request thread: the same pool
        assert (again["pid"], again["supervisor_pid"]) == (first["pid"], first["supervisor_pid"])

        settings_file = tmp_path / "tmp_settings.py"

        def reloaded() -> bool:
            # Touch until it lands: a change made before the reloader's first scan goes unseen.
            stamp = time.time() + 5
            os.utime(settings_file, (stamp, stamp))
            return _serving_pid(url) not in (None, first["pid"])

        assert wait_until(reloaded, timeout=30, interval=0.5)
        second = _get(url)
        assert wait_until(lambda: not pid_alive(first["supervisor_pid"]), timeout=10)
        assert not pid_alive(first["worker_pid"])
        assert _children(server.pid) == [second["pid"]]
        assert _children(second["pid"]) == [second["supervisor_pid"]]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()


def _serving_pid(url: str):
    try:
        return _get(url)["pid"]
    except OSError:
        return None


def _wait_for_server(url: str, server: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"runserver exited {server.returncode}: {server.stderr.read().decode()[-2000:]}")
        try:
            return _get(url)
        except OSError:
            time.sleep(0.2)
    pytest.fail("runserver did not answer within 30 s")
