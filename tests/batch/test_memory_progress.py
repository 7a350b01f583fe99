"""Worker memory (growth, not absolute RSS, recycles a worker) and progress (log, callable,
tick() inside a chunk, a tqdm bar on a terminal, silence)."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from django.db import connection

import multicore
from multicore import _core
from multicore.batch import run_batch
from tests.batch import tasks
from tests.batch.conftest import counters
from tests.batch.models import Row
from tests.support import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_leaking_worker_is_recycled_between_chunks(rows, fresh_pool):
    report = run_batch(rows, tasks.leak, name="leak", chunk_size=10, max_memory_per_worker="100MB", progress=None)
    assert report.done == 10 and counters() == [1] * 98
    # 40 MB a chunk, 100 MB of growth allowed: a worker takes 3 chunks, then a new one comes.
    pids = set(Row.objects.values_list("result", flat=True))
    assert len(pids) >= 4
    recycles = sum(w["recycles"] for w in multicore.pool_info()["workers"])
    assert recycles >= 2
    for w in multicore.pool_info()["workers"]:
        assert _core.rss_bytes(w["pid"]) < _core.rss_bytes(os.getpid()) + 200 * 1024 * 1024


def test_a_worker_forked_from_a_big_parent_is_not_recycled_after_every_chunk(rows, fresh_pool):
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # resident, so the workers share it
    try:
        multicore.initialize(workers=2)
        assert multicore.warm_up()
        start = [w["pid"] for w in multicore.pool_info()["workers"]]
        report = run_batch(rows, tasks.record_pid, chunk_size=5, max_memory_per_worker="100MB", progress=None)
        assert report.done == 20
        workers = multicore.pool_info()["workers"]
        assert max(_core.rss_bytes(w["pid"]) for w in workers) > 250 * 1024 * 1024  # over 100 MB absolute
        assert sum(w["recycles"] for w in workers) == 0
        assert set(Row.objects.values_list("result", flat=True)) <= set(start)
    finally:
        del ballast


def test_callable_progress_gets_events_and_a_final_one(rows):
    events = []
    report = run_batch(rows, tasks.bump, chunk_size=10, progress=events.append)
    assert report.done == 10
    assert events[-1].final and events[-1].done == 10 and events[-1].rows == 98 and events[-1].total == 10
    done = [e.done for e in events if not e.final]
    assert done == sorted(done) and len(set(done)) >= 5


def test_tick_moves_progress_inside_a_long_chunk(rows):
    events = []
    run_batch(rows.filter(pk__lte=rows.order_by("pk")[19].pk), tasks.slow_ticks, chunk_size=50, progress=events.append)
    inside = [e.ticks for e in events if e.done == 0 and e.ticks]
    assert inside and max(inside) < 20 and inside == sorted(inside)


def test_log_progress_lines(rows, caplog):
    caplog.set_level(logging.INFO, logger="multicore.batch")
    run_batch(rows, tasks.bump_rows, name="logged", chunk_size=10, progress="log", progress_interval=0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "multicore.batch" and r.levelno == logging.INFO]
    assert len(lines) >= 2
    assert lines[-1].startswith("logged: 10/10 chunks (100.0%), 98 rows, ") and "done in" in lines[-1]
    assert all("chunks/s" in line for line in lines) and any("ETA" in line for line in lines[:-1])


def test_progress_none_is_silent(rows, caplog):
    caplog.set_level(logging.DEBUG, logger="multicore.batch")
    run_batch(rows, tasks.bump, name="quiet", chunk_size=10, progress=None)
    assert not [r for r in caplog.records if r.name == "multicore.batch"]


def test_auto_progress_is_a_tqdm_bar_on_a_terminal(rows):
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.batch.settings",
        "PYTHONPATH": ROOT,
        "BATCH_TEST_DB_NAME": connection.settings_dict["NAME"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runbatch", "tests.batch.tasks.BumpJob"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=child,
        text=True,
    )
    os.close(child)
    out = proc.communicate(timeout=60)[0]
    screen = b""
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:
            break
        if not data:
            break
        screen += data
    os.close(parent)
    assert proc.returncode == 0 and "10/10 chunks done" in out
    text = screen.decode(errors="replace")
    assert "10/10" in text and "chunk/s" in text and "98 rows" in text and "\r" in text
