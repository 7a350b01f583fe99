"""A real Dask cluster for the tests and the benchmark: ``dask scheduler`` and ``dask worker``
processes (each worker single-threaded, under its nanny), started as subprocesses.

Every process gets its own session, so ``stop()`` reaches the nanny and its worker with one
``killpg``; every wait is bounded. Should the test run die before it can clean up (a pytest-timeout
exit, a SIGKILL), the kernel kills the scheduler and the nannies with it (``PR_SET_PDEATHSIG``), a
nanny's worker leaves when its nanny does, and ``--death-timeout`` makes a worker whose scheduler
is gone exit anyway.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASK = os.path.join(os.path.dirname(sys.executable), "dask")

# What docs/dask.md recommends for multicore's semantics: a worker death fails the call
# (WorkerLostError) instead of re-running it on another worker.
SCHEDULER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}


def _die_with_parent() -> None:  # in the child, before exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tls_files(directory: str) -> dict[str, str]:
    """A self-signed certificate and its key in ``directory`` (the certificate is its own CA), as
    Dask's TLS settings: {"ca-file", "cert", "key"} -> path."""
    from distributed.security import Security

    temporary = Security.temporary()  # needs the cryptography package (the test extra has it)
    files = {"ca-file": temporary.tls_ca_file, "cert": temporary.tls_client_cert, "key": temporary.tls_client_key}
    paths = {}
    for name, pem in files.items():
        path = os.path.join(directory, f"{name}.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(pem)
        paths[name] = path
    return paths


class Cluster:
    def __init__(
        self,
        workers: int = 2,
        host: str = "127.0.0.1",
        env: dict | None = None,
        tls: dict[str, str] | None = None,
        worker_env: dict | None = None,
    ) -> None:
        self.host = host
        self.port = free_port(host)
        self.tls = tls
        self.address = f"{'tls' if tls else 'tcp'}://{host}:{self.port}"
        self.n_workers = workers
        self.env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
        self.worker_env = worker_env or {}  # on top of env, for the workers (and their nannies) only
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []
        self._logdir = tempfile.mkdtemp(prefix="multicore-dask-")

    def _spawn(
        self, name: str, argv: list[str], env: dict | None = None, prefix: list[str] | None = None
    ) -> subprocess.Popen:
        log = os.path.join(self._logdir, f"{name}.log")
        self.logs.append(log)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*(prefix or []), DASK, *argv],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 60.0) -> Cluster:
        try:
            scheduler = self._spawn(
                "scheduler",
                ["scheduler", "--host", self.host, "--port", str(self.port), "--no-dashboard", *self._tls_args()],
                SCHEDULER_ENV,
            )
            deadline = time.monotonic() + timeout
            while not _port_open(self.host, self.port):
                if scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dask scheduler did not start:\n{self.tail()}")
                time.sleep(0.1)
            for i in range(self.n_workers):
                self.add_worker(f"w{i}")
            if self.n_workers:
                self.wait_for_workers(self.n_workers, timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str, host: str | None = None, prefix: list[str] | None = None) -> subprocess.Popen:
        return self._spawn(
            name,
            [
                "worker",
                self.address,
                "--name",
                name,
                "--nthreads",
                "1",
                "--nanny",
                "--no-dashboard",
                "--host",
                host or self.host,
                "--memory-limit",
                "0",
                "--death-timeout",
                "30",
                *self._tls_args(),
            ],
            self.worker_env,
            prefix=prefix,
        )

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        return [
            "--protocol",
            "tls",
            "--tls-ca-file",
            self.tls["ca-file"],
            "--tls-cert",
            self.tls["cert"],
            "--tls-key",
            self.tls["key"],
        ]

    def client_config(self) -> dict[str, object]:
        """The Dask settings a client needs to reach this cluster (TLS: docs/dask.md)."""
        if not self.tls:
            return {}
        return {
            "distributed.comm.tls.ca-file": self.tls["ca-file"],
            "distributed.comm.tls.client.cert": self.tls["cert"],
            "distributed.comm.tls.client.key": self.tls["key"],
            "distributed.comm.require-encryption": True,
        }

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        import dask
        from distributed import Client

        with dask.config.set(self.client_config()), Client(self.address, timeout=10, set_as_default=False) as client:
            try:
                client.wait_for_workers(n, timeout=timeout)
            except TimeoutError:
                raise RuntimeError(f"{n} dask workers did not join within {timeout}s:\n{self.tail()}") from None

    def tail(self, lines: int = 30) -> str:
        parts = []
        for log in self.logs:
            try:
                with open(log, errors="replace") as f:
                    parts.append(f"--- {os.path.basename(log)}\n" + "".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self, grace: float = 10.0) -> None:
        """Stops the workers, then the scheduler: SIGTERM to each process group, SIGKILL after ``grace``."""
        for proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # also whatever the nanny left in its group
            proc.wait(timeout=10)
        self.procs.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
