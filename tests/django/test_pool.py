"""Django's PostgreSQL connection pool (``OPTIONS["pool"]``, Django 5.1+, psycopg-pool) with multicore.

The pool belongs to the parent: its connections are sessions on the server that a forked worker must
never use or close. Each worker gets fresh connections of its own, and the parent's pool keeps the
very same server sessions, all still answering, while the pool runs and after it stopped.

Runs in a child interpreter (the pool needs CONN_MAX_AGE=0, unlike the suite's settings) with every
warning an error, on the server at MULTICORE_TEST_PG_URL.
"""

from __future__ import annotations

import os

import pytest

from tests.support import run_python

pytestmark = pytest.mark.postgres


def backend(_=None):
    """In a worker: (worker pid, server pid of the connection Django gave it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return os.getpid(), cursor.fetchone()[0]


SCENARIO = r"""
import sys
import django
from django.conf import settings
from tests import settings as base

assert sys.warnoptions == ["error"], sys.warnoptions
db = {
    **base.DATABASES["default"],
    "CONN_MAX_AGE": 0,  # required by the pool option
    "CONN_HEALTH_CHECKS": False,
    "OPTIONS": {**base.DATABASES["default"]["OPTIONS"], "pool": {"min_size": 2, "max_size": 2, "timeout": 10}},
}
settings.configure(DATABASES={"default": db}, INSTALLED_APPS=["multicore"], USE_TZ=True, MULTICORE={"workers": 2})
django.setup()

from django.db import connection
import multicore
from tests.django.test_pool import backend

connection.ensure_connection()  # Django opens its pool on the first connection
connection.close()
pool = connection.pool  # the parent's psycopg_pool.ConnectionPool
pool.wait(timeout=10)


def server_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def pooled_sessions():
    # Every connection of the parent's pool at once: the server sessions, each answering a query.
    conns = [pool.getconn(timeout=10) for _ in range(pool.max_size)]
    try:
        return {server_pid(conn) for conn in conns}
    finally:
        for conn in conns:
            pool.putconn(conn)


def alive(pids):
    with pool.connection(timeout=10) as conn:
        return {row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)])}


before = pooled_sessions()
assert len(before) == 2, before

# At the fork Django's connection holds one pooled connection, the pool the other one.
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    django_session = cursor.fetchone()[0]
assert django_session in before

task = multicore.Task()
for i in range(40):
    task.run(backend, i)
results = task.get(timeout=60)
workers = {pid for pid, _ in results}
worker_sessions = {session for _, session in results}
assert workers and len(workers) <= 2, workers
assert not (worker_sessions & before), (worker_sessions, before)   # fresh connections, never the parent's

# The parent's connection is the same session and still answers; so is every pooled one.
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    assert cursor.fetchone()[0] == django_session
connection.close()  # back into the pool
assert pooled_sessions() == before
stats = pool.get_stats()
assert not stats.get("connections_lost") and not stats.get("returns_bad"), stats

multicore.shutdown()
# The workers' own pools went with them; the parent's is untouched.
import time
deadline = time.monotonic() + 10
while alive(worker_sessions) and time.monotonic() < deadline:
    time.sleep(0.05)
assert not alive(worker_sessions), alive(worker_sessions)
assert pooled_sessions() == before
pool.close()
print("OK", len(worker_sessions))
"""


def test_workers_get_fresh_connections_and_the_parents_pool_is_untouched():
    proc = run_python(SCENARIO, timeout=90, env={"PYTHONWARNINGS": "error", "MULTICORE_TEST_DB": "postgres"})
    assert proc.stdout.split()[0] == "OK", proc.stdout
    assert proc.stderr == "", proc.stderr
