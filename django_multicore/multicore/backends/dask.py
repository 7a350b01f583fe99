"""The Dask distributed backend: the same ``Task`` API, run on the workers of a Dask cluster.

For work that needs more cores than one machine has (docs/dask.md). The local pool's semantics
are kept, on Dask's terms:

- every call is its own task with a unique key and ``pure=False`` (Dask would merge two identical
  calls otherwise), ``retries=0``, collected in submission order;
- the call runs inside ``_run`` on the worker, which encodes the result or the exception exactly
  as a local worker does (``multicore._pool.wire``), so ``get()`` raises the call's own exception
  with a ``RemoteTraceback`` as ``__cause__``;
- Dask cannot interrupt a running task: a timeout cancels the calls and has the nannies of the
  workers still running one kill them (each nanny then starts a fresh worker);
- a worker that dies running a call gives ``WorkerLostError`` at once; that it is not re-run elsewhere
  needs ``distributed.scheduler.allowed-failures: 0`` on the scheduler (we warn when it is not);
- Django: a worker plugin sets Django up on each worker from ``DJANGO_SETTINGS_MODULE`` and gives
  it the client's ``DATABASES`` (the test database under a test runner); each call runs between
  ``close_old_connections()``, so a worker keeps one healthy connection per database;
- ``multicore.batch`` runs its chunks here too (``batch/executors.py``), with the same calls, and
  hears from running chunks (their start, their ticks) through events (``listen``/``send_event``).

One ``distributed.Client`` per process, made on first use (after any server fork: a forked child
forgets its parent's client) and closed by ``multicore.shutdown()``.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
import uuid
import warnings
from typing import Any

import cloudpickle
from distributed import Client, WorkerPlugin
from distributed.client import _wait as _wait_futures  # distributed.wait() minus its default-client lookup
from distributed.scheduler import KilledWorker

from multicore import backends
from multicore import options as _options
from multicore._pool import wire
from multicore.exceptions import (
    ConfigurationError,
    MulticoreError,
    MulticoreWarning,
    PoolUnavailableError,
    RemoteError,
    SerializationError,
    TaskCompleteError,
    TimeoutExceededError,
    WorkerLostError,
)

logger = logging.getLogger("multicore.dask")

#: Seconds to reach the scheduler before PoolUnavailableError.
CONNECT_TIMEOUT = 10.0
#: Seconds shutdown() waits for the workers to close their database connections, and for the client.
CLOSE_TIMEOUT = 5.0

ENV_ADDRESS = "DASK_SCHEDULER_ADDRESS"
PLUGIN_NAME = "multicore-django"


# --------------------------------------------------------------------------- the client side


class _Connection:
    __slots__ = ("client", "address", "pid", "databases", "listening")

    def __init__(self, client: Client, address: str) -> None:
        self.client = client
        self.address = address
        self.pid = os.getpid()
        self.databases: Any = None  # the DATABASES the worker plugin was registered with
        self.listening = False  # subscribed to EVENTS_TOPIC (listen())

    def usable(self) -> bool:
        return self.pid == os.getpid() and self.client.status == "running"


_lock = threading.RLock()
_conn: _Connection | None = None
_address: str | None = None  # given to initialize(); wins over the settings until shutdown()
_inherited: list[Any] = []  # a forked child's copy of its parent's client: never used, never closed


def scheduler_address(options: _options.Options) -> str:
    """The configured address: ``dask-address``, else ``DASK_SCHEDULER_ADDRESS``."""
    address = options.dask_address or os.environ.get(ENV_ADDRESS)
    if not address:
        raise ConfigurationError(
            'the "dask" backend needs the scheduler\'s address: set MULTICORE["dask-address"] '
            f'(e.g. "tcp://scheduler:8786"), pass initialize(dask_address=...), or set {ENV_ADDRESS}'
        )
    return address


def connect(options: _options.Options, explicit: bool = True) -> _Connection:
    """This process's connection to the scheduler, made if needed. ``explicit`` (from
    ``initialize()``): the address given now replaces any other until ``shutdown()``."""
    global _conn, _address
    with _lock:
        conn = _conn
        if explicit:
            address = scheduler_address(options)
            _address = address
        elif conn is not None and conn.usable():
            return conn
        else:
            address = _address or scheduler_address(options)
        if conn is not None and conn.usable() and conn.address == address:
            return conn
        if conn is not None:
            _conn = None
            _close(conn)
        _conn = _open(address)
        return _conn


def _open(address: str) -> _Connection:
    try:
        # set_as_default=False: multicore's client must not become the one dask.compute() uses.
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except ValueError as exc:
        raise ConfigurationError(f"bad Dask scheduler address {address!r}: {exc}") from exc
    except Exception as exc:
        raise PoolUnavailableError(
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:g}s: {type(exc).__name__}: {exc}"
        ) from exc
    conn = _Connection(client, address)
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
    except Exception:  # noqa: BLE001 - an old scheduler: nothing to check against
        allowed = None
    if allowed:
        warnings.warn(
            f"the Dask scheduler at {address} re-runs a call whose worker died up to {allowed} "
            "time(s) (distributed.scheduler.allowed-failures); multicore's WorkerLostError "
            "semantics need 0: start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 "
            "(docs/dask.md)",
            MulticoreWarning,
            stacklevel=4,
        )
    logger.info("multicore: connected to the Dask scheduler at %s", address)
    return conn


def session(options: _options.Options) -> _Connection:
    """What each use of the backend (a Task, a batch) starts from: this process's connection,
    with the Django worker plugin registered for the current databases."""
    conn = connect(options, explicit=False)
    _ensure_django(conn)
    return conn


def kill_workers(client: Client, addresses: list[str]) -> None:
    """Has the nannies of these workers kill them (each starts a fresh one): how a running call
    is stopped, since Dask cannot interrupt a task."""
    if addresses:
        client.run(_kill_worker_process, workers=addresses, nanny=True, on_error="return")


def lost_worker(exc: BaseException) -> tuple[str, int | None] | None:
    """(address, pid) of the dead worker when ``exc`` (a future's exception) says a worker died
    running it; None for any other exception."""
    if not isinstance(exc, KilledWorker):
        return None
    return getattr(exc.last_worker, "address", "?"), getattr(exc.last_worker, "pid", None)


# Events from calls on the workers to this client (multicore.batch's progress): one topic for
# every client, each message naming the listener it is for.
EVENTS_TOPIC = "multicore-events"
_listeners: dict[str, Any] = {}  # token -> handler(msg), called in the client's event loop thread


def listen(conn: _Connection, token: str, handler: Any) -> None:
    """Calls ``handler(msg)`` for each event sent with ``send_event(token, msg)`` on a worker.
    The handler runs in the client's IO thread: it must be quick and thread-safe."""
    with _lock:
        _listeners[token] = handler
        if not conn.listening:
            conn.client.subscribe_topic(EVENTS_TOPIC, _dispatch)
            conn.listening = True


def unlisten(token: str) -> None:
    with _lock:
        _listeners.pop(token, None)


def _dispatch(event: tuple[float, Any]) -> None:
    msg = event[1]
    handler = _listeners.get(str(msg.get("to"))) if isinstance(msg, dict) else None
    if handler is not None:
        handler(msg)


def send_event(token: str, msg: dict[str, Any], wait: bool = False) -> None:  # on a worker, in a call
    """Sends ``msg`` (msgpack-able) to the client listening on ``token``, through the scheduler.
    ``wait``: returns once the scheduler has it (one round trip), so it reaches the client before
    anything the call does next, even the worker's death; else it leaves with the worker's next
    batch of messages (within milliseconds)."""
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()
    msg = {**msg, "to": token, "worker": worker.address}
    if wait:
        sync(worker.loop, worker.scheduler.log_event, topic=EVENTS_TOPIC, msg=msg)
    else:
        worker.log_event(EVENTS_TOPIC, msg)


def _kill_worker_process(dask_worker: Any) -> int | None:  # runs in a nanny
    """SIGKILLs the nanny's worker process; the nanny then starts a fresh one."""
    pid = dask_worker.pid
    if pid:
        os.kill(pid, signal.SIGKILL)
    return pid


def _allowed_failures(dask_scheduler: Any) -> int:  # runs on the scheduler
    return dask_scheduler.allowed_failures


def _close(conn: _Connection) -> None:
    if conn.pid != os.getpid():
        return
    client = conn.client
    try:
        if conn.databases is not None and client.status == "running":
            _close_worker_connections(client)
    except Exception:
        logger.warning("multicore: could not close the Dask workers' database connections", exc_info=True)
    try:
        client.close(timeout=CLOSE_TIMEOUT)
    except Exception:
        logger.warning("multicore: closing the Dask client failed", exc_info=True)


def _close_worker_connections(client: Client) -> None:
    """Each worker closes its database connections (a test runner then can drop the test
    database). They live in the worker's task thread, so this runs as a task pinned to it."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    futures = [
        client.submit(
            _close_connections,
            key=f"multicore-close-db-{uuid.uuid4().hex}",
            workers=[w],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )
        for w in workers
    ]
    try:
        _wait(client, futures, CLOSE_TIMEOUT)
    finally:
        client.cancel(futures, force=True)


def _wait(client: Client, futures: list[Any], timeout: float | None) -> None:
    """Waits until every future is done (finished, erred or cancelled); TimeoutError after ``timeout``."""
    client.sync(_wait_futures, futures, timeout=timeout)


#: Seconds get() waits on one call before it looks for a failure among the later ones; more when
#: many calls are left (a look reads each one's status), so that looking costs little CPU.
FAILURE_SCAN_EVERY = 0.1
_SCANNED_PER_SECOND = 20_000


async def _wait_done_or_failed(futures: list[Any], timeout: float | None) -> None:
    """In the client's event loop: until every future is done, or one failed (our calls only fail
    when their worker died: errors of the function come back as results), or TimeoutError.
    ``distributed.wait()`` has no FIRST_EXCEPTION; this is it, on the same per-future state.

    It waits for the futures in submission order, one at a time (a watcher per future costs the
    client's IO thread about 25 µs a call), and while one keeps it waiting, it checks the later
    ones' status now and then: a worker that died running call 7 fails get() while call 0 runs."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    for index, future in enumerate(futures):
        while not future.done():
            wait = max(FAILURE_SCAN_EVERY, (len(futures) - index) / _SCANNED_PER_SECOND)
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError()
                wait = min(wait, left)
            try:
                async with asyncio.timeout(wait):
                    await future._state.wait()
            except TimeoutError:
                if any(later.status in _FAILED for later in futures[index + 1 :]):
                    return
        if future.status != "finished":
            return


_FAILED = ("error", "cancelled", "lost")


def close() -> None:
    """Closes this process's client (``multicore.shutdown()``); ``connect()`` works again."""
    global _conn, _address
    with _lock:
        conn, _conn, _address = _conn, None, None
    if conn is not None:
        _close(conn)


def _after_fork_in_child() -> None:
    global _conn, _lock
    _lock = threading.RLock()
    if _conn is not None:
        _inherited.append(_conn)  # its IO thread did not survive the fork: drop it untouched
        _conn = None


os.register_at_fork(after_in_child=_after_fork_in_child)
# Registered after distributed's own exit handlers, so it runs before them (atexit is LIFO).
atexit.register(close)


# --------------------------------------------------------------------------- Django


def _django_state() -> tuple[str, dict[str, dict]] | None:
    """(settings module, the client's DATABASES as its connections see them), when this process
    runs Django from a settings module; None otherwise (then workers get no Django set-up)."""
    if "django" not in sys.modules:
        return None
    from django.apps import apps
    from django.conf import settings

    if not settings.configured or not apps.ready:
        return None
    module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return None
    from django.db import connections

    # The connections' settings_dict, not settings.DATABASES: a test runner rewrites NAME there.
    return module, {alias: connections[alias].settings_dict for alias in connections}


def _ensure_django(conn: _Connection) -> None:
    """Registers (again, when DATABASES changed: the test database) the Django worker plugin."""
    state = _django_state()
    if state is None or state == conn.databases:
        return
    plugin = DjangoSetup(state[0], copy.deepcopy(state[1]))
    conn.client.register_plugin(plugin, name=PLUGIN_NAME)
    conn.databases = copy.deepcopy(state)


class DjangoSetup(WorkerPlugin):
    """Sets Django up on each worker (now and every worker that joins later) with the client's
    settings module and databases."""

    idempotent = False  # registered again with other databases, it must replace the old one

    def __init__(self, settings_module: str, databases: dict[str, dict]) -> None:
        self.settings_module = settings_module
        self.databases = databases

    def setup(self, worker: Any) -> None:
        _setup_django(self.settings_module, self.databases)


# --------------------------------------------------------------------------- the worker side

_generation = 0  # bumped when the plugin changes DATABASES; a thread's connections then reopen
_django_ready = False
_local = threading.local()
_current: dict[int, str] = {}  # thread id -> key of the multicore call it runs


def _setup_django(settings_module: str, databases: dict[str, dict]) -> None:
    global _generation, _django_ready
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from django.conf import settings
    from django.db import connections

    for alias, settings_dict in databases.items():
        # The handler caches its settings dict (the same object as settings.DATABASES after its
        # first use); both are updated so connections created from now on use these.
        settings.DATABASES[alias] = settings_dict
        connections.settings[alias] = settings_dict
    _generation += 1
    _django_ready = True


def _before_call() -> None:
    from django.db import close_old_connections, connections

    if getattr(_local, "generation", None) != _generation:
        # Connections of this thread were made with the databases of an earlier registration.
        for conn in connections.all(initialized_only=True):
            conn.close()
        for alias in connections:
            connections[alias] = connections.create_connection(alias)
        _local.generation = _generation
    for conn in connections.all(initialized_only=True):
        conn.queries_log.clear()  # like request_started: DEBUG must not grow memory per call
    close_old_connections()


def _after_call() -> None:
    from django.db import close_old_connections

    close_old_connections()


def _close_connections() -> None:
    if _django_ready:
        from django.db import connections

        connections.close_all()


def _run(request: bytes, key: str) -> tuple[int, Any]:
    """Runs one call on a dask worker; returns the encoded result or error (``wire``)."""
    ident = threading.get_ident()
    _current[ident] = key
    backends._calls.running = True
    django = _django_ready
    fn: Any = None
    try:
        if django:
            try:
                _before_call()
            except Exception:
                logger.exception("multicore: preparing the database connections failed")
        try:
            fn, args, kwargs, fmt = pickle.loads(request)
        except BaseException as exc:  # noqa: BLE001
            error = SerializationError(
                f"the call could not be unpickled on Dask worker pid {os.getpid()}: "
                f"{type(exc).__name__}: {exc}. Deploy the same code (and packages) on every worker"
            )
            return wire.encode_error(error, traceback.format_exc())
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt go back too
            return wire.encode_error(exc, traceback.format_exc())
        return wire.encode_result(result, fmt, fn)
    finally:
        if django:
            try:
                _after_call()
            except Exception:
                logger.exception("multicore: closing stale database connections failed")
        backends._calls.running = False
        _current.pop(ident, None)


# --------------------------------------------------------------------------- Task


def make_task(timeout: float | None, options: _options.Options) -> DaskTask | None:
    return DaskTask(session(options), timeout if timeout is not None else options.timeout)


def encode_request(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fmt: int) -> bytes:
    """A call as ``_run`` receives it. Functions travel with cloudpickle: module-level ones by
    reference (deploy the same code on every worker), lambdas and closures by value."""
    try:
        return cloudpickle.dumps((fn, args, kwargs, fmt), protocol=wire.PROTOCOL)
    except Exception as exc:
        culprit = wire._culprit(fn, args, kwargs, lambda o: cloudpickle.dumps(o, protocol=wire.PROTOCOL))
        raise SerializationError(f"cannot send {culprit} to a Dask worker") from exc


def submit(conn: _Connection, request: bytes, key: str) -> Any:
    """One call as one task: a key of our own and pure=False, so two identical calls are two
    tasks; retries=0, so a call that failed is not run again."""
    return conn.client.submit(_run, request, key, key=key, pure=False, retries=0)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class DaskTask:
    """``multicore.Task`` on a Dask cluster: made by ``Task(backend="dask")`` or by ``Task()``
    when the configured backend is "dask". Same methods, same results and errors."""

    __slots__ = ("_conn", "_futures", "_names", "_prefix", "_complete", "_timeout")

    backend = "dask"

    def __init__(self, conn: _Connection, timeout: float | None) -> None:
        self._conn = conn
        self._futures: list[Any] = []
        self._names: list[str] = []
        self._prefix = f"multicore-{uuid.uuid4().hex}"
        self._complete = False
        self._timeout = timeout

    def run(
        self, fn: Any, *args: Any, serialization_format: str = "pickle", use_dill: bool = False, **kwargs: Any
    ) -> None:
        """Queues ``fn(*args, **kwargs)`` on the cluster. Functions travel with cloudpickle:
        module-level functions by reference (deploy the same code on every worker), lambdas,
        closures and ``__main__`` functions by value (``use_dill`` is accepted and not needed)."""
        if self._complete:
            raise TaskCompleteError()
        if not callable(fn):
            raise TypeError(f"Task.run() needs a callable first, got {type(fn).__name__}: {fn!r:.80}")
        fmt = wire.FORMATS.get(serialization_format)
        if fmt is None:
            raise ValueError(
                f"serialization_format must be one of {', '.join(map(repr, wire.FORMATS))}, "
                f"got {serialization_format!r}"
            )
        request = encode_request(fn, args, kwargs, fmt)
        key = f"{self._prefix}-{len(self._futures)}"
        self._futures.append(submit(self._conn, request, key))
        self._names.append(_name(fn))

    def get(self, timeout: float | None = None) -> list[Any]:
        """Every call's result in submission order; raises like ``multicore.Task.get()``."""
        if self._complete:
            raise TaskCompleteError()
        self._complete = True
        timeout = timeout if timeout is not None else self._timeout
        futures = self._futures
        try:
            try:
                self._conn.client.sync(_wait_done_or_failed, futures, timeout)
            except TimeoutError:
                unfinished = sum(1 for f in futures if not f.done())
                restarted = self._stop(restart=True)
                raise TimeoutExceededError(
                    f"Task.get() timed out after {timeout}s with {unfinished} of {len(futures)} calls "
                    f"unfinished on Dask; they were cancelled and the workers running them "
                    f"({', '.join(restarted) or 'none'}) restarted"
                ) from None
            for index, future in enumerate(futures):
                if future.status in _FAILED:  # others may still be pending
                    self._raise_failed(index, future)
            outcomes = self._conn.client.gather(futures)
        except MulticoreError:
            raise
        except BaseException:
            self._stop(restart=True)  # Ctrl-C stops the work, as in the local pool
            raise
        finally:
            self._futures = []  # releases the keys on the cluster
        return [wire.decode_result(kind, body) for kind, body in outcomes]

    def _raise_failed(self, index: int, future: Any) -> None:
        where = f"call {index} of {len(self._names)} ({self._names[index]})"
        if future.status == "cancelled" or not self._conn.usable():
            self._stop(restart=False)
            raise PoolUnavailableError(
                f"{where} was lost: the connection to the Dask scheduler at {self._conn.address} "
                f"broke (client status {self._conn.client.status!r})"
            )
        exc = future.exception()
        self._stop(restart=False)  # the others are cancelled; running ones may finish, unread
        lost = lost_worker(exc)
        if lost is not None:
            worker, pid = lost
            raise WorkerLostError(
                f"Dask worker {worker}{f' (pid {pid})' if pid else ''} died while running {where}; "
                "it was not run again. Its nanny restarts it. Often the OOM killer (see the "
                "worker's log), a crash in native code, or os._exit()",
                pid=pid,
            ) from exc
        tb = "".join(traceback.format_exception(exc))
        raise RemoteError(type(exc).__qualname__, str(exc), tb, f"Dask could not run {where}") from exc

    def _stop(self, restart: bool) -> list[str]:
        """Cancels the unfinished calls; with ``restart``, restarts the workers running one (Dask
        cannot interrupt a running task). Returns the restarted workers' addresses."""
        pending = [f for f in self._futures if not f.done()]
        if not pending:
            return []
        client = self._conn.client
        stuck: list[str] = []
        try:
            if restart:
                keys = {f.key for f in pending}
                stuck = [w for w, ks in client.processing().items() if keys.intersection(ks)]
            client.cancel(pending, force=True)
            # Through the nannies: a nanny's restart_workers() lets a busy worker finish its
            # task first, and the worker's own event loop may be starved by the call.
            kill_workers(client, stuck)
        except Exception:
            logger.warning("multicore: stopping Dask calls failed", exc_info=True)
        return stuck

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        state = "collected" if self._complete else "open"
        return f"<multicore.Task dask {self._conn.address} {state}, {len(self._names)} calls>"


# --------------------------------------------------------------------------- pool_info, ranges


def info() -> dict[str, Any]:
    """``pool_info()`` for the dask backend: the scheduler and its workers (pids, threads)."""
    conn = _conn
    if conn is None or not conn.usable():
        return {"backend": "dask", "running": False, "scheduler": _address, "workers": [], "pid": os.getpid()}
    client = conn.client
    workers = client.scheduler_info(n_workers=-1)["workers"]
    pids = client.run(os.getpid)
    return {
        "backend": "dask",
        "running": True,
        "scheduler": conn.address,
        "workers": [
            {
                "address": address,
                "name": w.get("name"),
                "host": w.get("host"),
                "nthreads": w.get("nthreads"),
                "nanny": w.get("nanny"),
                "status": w.get("status"),
                "pid": pids.get(address),
            }
            for address, w in sorted(workers.items())
        ],
        "pid": os.getpid(),
    }


def workers() -> int:
    """Calls the cluster runs at once (its worker threads), for ``ranges()``; connects if needed."""
    conn = connect(_options.current(), explicit=False)
    threads = sum(w.get("nthreads", 1) for w in conn.client.scheduler_info(n_workers=-1)["workers"].values())
    return max(1, threads)
