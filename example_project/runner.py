"""Runs the example project under a real server on 127.0.0.1 (used by demo.py, the server tests
and the HTTP benchmarks): database set-up, start, readiness, process tree, clean stop.

Every server runs the same app (``exampleproject.wsgi:application``, or ``exampleproject.asgi``
for granian's ASGI interface, uvicorn and gunicorn's uvicorn worker). A server's *hosts* are the
processes that serve requests and so must each hold one multicore pool: gunicorn and uWSGI
workers, mod_wsgi daemon processes, granian and uvicorn workers. Nothing else in the tree may
hold one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_env(**extra: str) -> dict[str, str]:
    """The environment for manage.py and gunicorn: the repo importable, settings chosen."""
    root = str(HERE.parent)
    path = os.pathsep.join(p for p in (str(HERE), root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "DJANGO_SETTINGS_MODULE": "exampleproject.settings", **extra}


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def prepare_database(env: dict[str, str], products: int = 3000) -> str:
    """migrate + seed (idempotent); returns seed's message."""
    manage("migrate", "--noinput", "-v0", env=env)
    return manage("seed", "--products", str(products), env=env).strip()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...),
    or None for a process that is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else fields


def parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def children(pid: int) -> list[int]:
    """Live (non-zombie) children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_of(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def alive(pid: int) -> bool:
    return parent_of(pid) is not None


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid``: a server started with ``start_new_session`` and all it
    starts, also processes never seen in its tree (started after the last look, or re-parented)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[3]) == sid:
                found.append(int(entry))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def control_regions(pid: int) -> int:
    """How many multicore pools' shared control regions ``pid`` has mapped (distinct memfds)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return len({line.split()[4] for line in f if "/memfd:multicore-control" in line})
    except (FileNotFoundError, ProcessLookupError):
        return 0


def is_resource_tracker(pid: int) -> bool:
    """The helper process multiprocessing's spawn and forkserver methods start."""
    return "multiprocessing.resource_tracker" in cmdline(pid)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class Server:
    """A server process tree: ``with Uwsgi(env, workers=2) as server:``; always stopped.

    Subclasses give the command line (``command()``) and which processes are hosts (``hosts()``).
    """

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, env: dict[str, str], *, workers: int = 1, log_file: str | None = None) -> None:
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self.seen: set[int] = set()  # every pid of the tree observed, for the final check

    def command(self) -> list[str]:
        raise NotImplementedError

    def hosts(self) -> list[int]:
        """The processes that serve requests (each must hold exactly one pool)."""
        return children(self.master)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout: float = 60) -> None:
        # The server gets its own copy of the log's descriptor; ours is closed once it started.
        with open(self.log_file, "ab") if self.log_file else contextlib.nullcontext(subprocess.DEVNULL) as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=HERE, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}{self.log_tail()}")
            if self.pools_ready():
                return
            time.sleep(0.1)
        tree = self.tree()
        self.stop()
        raise RuntimeError(f"{self.name} did not get ready within {ready_timeout}s: {tree}{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for an error message: the log's directory may be gone
        by the time anyone reads it (a benchmark's temporary directory)."""
        if not self.log_file:
            return " (no log: pass log_file to see why)"
        try:
            with open(self.log_file, "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f" (log {self.log_file}: {exc})"
        return f"; the end of its log ({self.log_file}):\n" + "\n".join(tail)

    @property
    def master(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def everything(self) -> list[int]:
        """The whole tree now (the master included); remembered for the final check."""
        pids = [self.master, *descendants(self.master)]
        self.seen.update(pids)
        return pids

    def tree(self) -> dict[int, dict[int, list[int]]]:
        """{host: {supervisor: [multicore workers]}} as seen in /proc."""
        self.everything()
        return {h: {s: children(s) for s in children(h)} for h in self.hosts()}

    def pools_ready(self, pool_size: int = 2) -> bool:
        tree = self.tree()
        return len(tree) == self.workers and all(
            len(sups) == 1 and all(len(p) == pool_size for p in sups.values()) for sups in tree.values()
        )

    def request(self, path: str, timeout: float = 60) -> tuple[int, bytes, float]:
        """(status, body, seconds) of one GET over a fresh loopback connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            began = time.perf_counter()
            conn.request("GET", path, headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read()
            return response.status, body, time.perf_counter() - began
        finally:
            conn.close()

    def json(self, path: str) -> dict:
        status, body, _ = self.request(path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:500]!r}")
        return json.loads(body)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        self.everything()
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left (it should be nothing) dies now, so a failing test leaks nothing.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in self.seen):
            time.sleep(0.05)
        # The server is the leader of its own session (start_new_session): everything it started
        # is in it unless it left with setsid(), which none of these servers does.
        for pid in {self.master, *self.seen, *session_members(self.master)}:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


class Gunicorn(Server):
    """gunicorn with example_project/gunicorn.conf.py (multicore's hooks)."""

    name = "gunicorn"

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        worker_class: str = "sync",
        threads: int = 1,
        preload: bool = False,
        max_requests: int = 0,
        timeout: int = 30,
        app: str | None = None,
        log_file: str | None = None,
    ) -> None:
        super().__init__(env, workers=workers, log_file=log_file)
        # app: another entry point than gunicorn.conf.py's WSGI one, e.g. "exampleproject.asgi:application"
        # with worker_class="uvicorn_worker.UvicornWorker".
        self.app = [app] if app else []
        self.args = [
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--max-requests",
            str(max_requests),
            "--max-requests-jitter",
            "0",
            "--timeout",
            str(timeout),
            "--graceful-timeout",
            "5",
        ] + (["--preload"] if preload else [])

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(HERE / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            *self.args,
            *self.app,
        ]

    def restart(self) -> None:
        """SIGHUP: gunicorn starts new workers, then stops the old ones gracefully."""
        os.kill(self.master, signal.SIGHUP)


class Uwsgi(Server):
    """uWSGI with a master and ``workers`` processes (example_project/uwsgi.ini has the rest)."""

    name = "uwsgi"

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        lazy_apps: bool = False,
        threads: int = 1,
        max_requests: int = 0,
        harakiri: int = 0,
        log_file: str | None = None,
    ) -> None:
        super().__init__(env, workers=workers, log_file=log_file)
        self.args = ["--processes", str(workers), "--threads", str(threads), "--harakiri", str(harakiri)]
        # uWSGI recycles no worker younger than min-worker-lifetime (10 s by default).
        self.args += ["--max-requests", str(max_requests), "--min-worker-lifetime", "1"] if max_requests else []
        self.args += ["--lazy-apps"] if lazy_apps else []

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("uwsgi")),
            "--ini",
            str(HERE / "uwsgi.ini"),
            "--http-socket",
            f"127.0.0.1:{self.port}",
            *self.args,
        ]


class ModWsgi(Server):
    """Apache with mod_wsgi in daemon mode (``mod_wsgi-express``): ``workers`` daemon processes of
    ``threads`` threads. Apache will not serve as root, so as root its children run as www-data."""

    name = "mod_wsgi"

    def __init__(
        self, env: dict[str, str], *, workers: int = 1, threads: int = 15, server_root: str, log_file: str | None = None
    ) -> None:
        super().__init__(env, workers=workers, log_file=log_file)
        self.server_root = server_root
        self.args = ["--processes", str(workers), "--threads", str(threads)]
        if os.getuid() == 0:
            self.args += ["--user", "www-data", "--group", "www-data"]

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("mod_wsgi-express")),
            "start-server",
            "--application-type",
            "module",
            "--entry-point",
            "exampleproject.wsgi",
            "--callable-object",
            "application",
            "--python-path",
            str(HERE),
            "--python-path",
            str(HERE.parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--server-root",
            self.server_root,
            "--locale",
            "C.UTF-8",
            "--log-to-terminal",
            "--startup-timeout",
            "30",
            "--shutdown-timeout",
            "5",
            *self.args,
        ]

    def hosts(self) -> list[int]:
        # The Apache parent's other children are its own (event MPM) workers: they hold no Python app.
        return [pid for pid in children(self.master) if cmdline(pid).startswith("(wsgi:")]

    def graceful(self) -> None:
        """``apachectl graceful``: new daemon processes replace the old ones."""
        os.kill(self.master, signal.SIGUSR1)


class Granian(Server):
    """granian with ``workers`` worker processes, its WSGI or ASGI interface."""

    name = "granian"

    def __init__(
        self, env: dict[str, str], *, workers: int = 1, interface: str = "wsgi", log_file: str | None = None
    ) -> None:
        super().__init__(env, workers=workers, log_file=log_file)
        self.interface = interface

    def hosts(self) -> list[int]:
        # On CPython 3.14, where multiprocessing's default is forkserver, granian starts its workers
        # with "spawn", and spawn starts multiprocessing's resource tracker: a child of granian's
        # main process that serves nothing (tests/servers/test_granian.py asserts which method ran).
        return [pid for pid in children(self.master) if not is_resource_tracker(pid)]

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("granian")),
            "--interface",
            self.interface,
            "--workers",
            str(self.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--working-dir",
            str(HERE),
            "--workers-kill-timeout",
            "10",
            f"exampleproject.{self.interface}:application",
        ]


class Uvicorn(Server):
    """uvicorn serving ``exampleproject.asgi``. With ``workers`` > 1 a manager process spawns that
    many fresh interpreters (multiprocessing's spawn: no fork, each imports the app itself) and
    respawns any that dies; with 1 the uvicorn process itself serves."""

    name = "uvicorn"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--lifespan",
            "off",  # Django does not speak it
            "--timeout-graceful-shutdown",
            "5",
            "--no-access-log",
            "exampleproject.asgi:application",
        ]

    def hosts(self) -> list[int]:
        if self.workers == 1:
            return [self.master]
        # The manager's other child is multiprocessing's resource tracker: it holds no app.
        return [pid for pid in children(self.master) if "spawn_main" in cmdline(pid)]

    def restart(self) -> None:
        """SIGHUP: the manager replaces its workers one by one, each new one serving before the old stops."""
        os.kill(self.master, signal.SIGHUP)


SERVERS = {cls.name: cls for cls in (Gunicorn, Uwsgi, ModWsgi, Granian, Uvicorn)}
