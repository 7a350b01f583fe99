"""Runs the example project under gunicorn on 127.0.0.1 (used by demo.py, the gunicorn tests
and benchmarks/http.py): database set-up, start, readiness, process tree, clean stop."""

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


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[1])


def children(pid: int) -> list[int]:
    """Live (non-zombie) children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_of(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def alive(pid: int) -> bool:
    return parent_of(pid) is not None


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class Gunicorn:
    """``with Gunicorn(env, workers=2) as server:`` starts the example project; always stopped."""

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
        log_file: str | None = None,
    ) -> None:
        self.port = free_port()
        self.env = env
        self.args = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(HERE / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
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
        self.workers = workers
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self.seen: set[int] = set()  # every pid of the tree observed, for the final check

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout: float = 60) -> None:
        # gunicorn gets its own copy of the log's descriptor; ours is closed once it started.
        with open(self.log_file, "ab") if self.log_file else contextlib.nullcontext(subprocess.DEVNULL) as log:
            self.proc = subprocess.Popen(
                self.args, cwd=HERE, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode} (log: {self.log_file})")
            if self.pools_ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not get ready within {ready_timeout}s (log: {self.log_file})")

    @property
    def master(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tree(self) -> dict[int, dict[int, list[int]]]:
        """{gunicorn worker: {supervisor: [multicore workers]}} as seen in /proc."""
        tree = {w: {s: children(s) for s in children(w)} for w in children(self.master)}
        for worker, supervisors in tree.items():
            self.seen.add(worker)
            for supervisor, pool in supervisors.items():
                self.seen.update([supervisor, *pool])
        return tree

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
        self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left (it should be nothing) dies now, so a failing test leaks nothing.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in self.seen):
            time.sleep(0.05)
        for pid in [self.master, *self.seen]:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
