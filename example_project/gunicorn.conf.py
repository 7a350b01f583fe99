"""Gunicorn configuration for the example project (recommended settings: docs/servers.md, docs/gunicorn.md).

    cd example_project && gunicorn -c gunicorn.conf.py

Each gunicorn worker gets its own multicore pool after loading the app (the hooks below);
the master holds none; a worker that exits takes its pool with it.
"""

import os

from multicore.gunicorn import (  # noqa: F401 - gunicorn reads these names
    child_exit,
    post_fork,
    post_worker_init,
    when_ready,
    worker_abort,
    worker_exit,
    worker_int,
)

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "exampleproject.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Each gunicorn worker already uses every core for big lists: one per core is enough, more
# only helps when requests wait on I/O (then prefer worker_class = "gthread").
workers = int(os.environ.get("GUNICORN_WORKERS", os.cpu_count() or 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", 1))
preload_app = os.environ.get("GUNICORN_PRELOAD", "0") == "1"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = 10
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 2000))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", 200))
