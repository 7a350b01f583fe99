"""Functions the dask tests send to the cluster (importable there: workers run from the repo root)."""

from __future__ import annotations

import os
import threading
import time
import uuid


class Boom(Exception):
    pass


def add(a, b=0, *, c=0):
    return a + b + c


def pid():
    return os.getpid()


def token():
    return uuid.uuid4().hex


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def fail(message):
    raise Boom(message)


def unpicklable_result():
    return threading.Lock()


def sleep_then_write(seconds, path):
    with open(path + ".started", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    with open(path, "w") as f:
        f.write("finished")
    return "stale"


def exit_hard(path):
    append_line(path, str(os.getpid()))
    os._exit(3)


def write_pid_and_wait(path, seconds):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "survived"


def nested_task():
    import multicore

    return multicore.Task() is None


def net_namespace():
    return os.stat("/proc/self/ns/net").st_ino


def connection_was_open():
    """(worker pid, whether this worker's connection was already open when the call started)."""
    from django.db import connection

    was_open = connection.connection is not None
    connection.ensure_connection()
    return os.getpid(), was_open
