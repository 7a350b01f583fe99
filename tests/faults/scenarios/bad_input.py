"""Scenarios of tests/faults/test_bad_input.py (run as ``python -m tests.faults.scenarios.bad_input <scenario>``)."""

import errno
import os
import resource
import signal
import threading
import time

import multicore
from multicore import Task, _core
from multicore._pool import lifecycle
from multicore.exceptions import (
    ConfigurationError,
    MulticoreError,
    MulticoreOSError,
    ProtocolError,
    RemoteError,
    SerializationError,
    SharedMemoryError,
)
from tests.faults._util import wait_for


def echo(x):
    return x


def nap(x):
    time.sleep(x)
    return os.getpid()


def returns_lock():
    return threading.Lock()


class LockedError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


def raises_locked():
    raise LockedError("holding a lock")


def returns_set():
    return {1, 2}


def returns_int():
    return 42


def big_result(n):
    return b"r" * n


def big_result_under_fsize_limit(n, limit):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return b"r" * n


def still_works(tag):
    t = Task()
    t.run(echo, tag)
    assert t.get(timeout=10) == [tag], tag


def expect(exc_type, fn, *needles):
    try:
        fn()
    except exc_type as exc:
        text = str(exc)
        for needle in needles:
            assert needle in text, f"{needle!r} not in {text!r}"
        return exc
    raise AssertionError(f"{exc_type.__name__} not raised")


def unpicklable_function_and_arguments_fail_in_run() -> None:
    multicore.initialize(workers=2)
    t = Task()
    expect(SerializationError, lambda: t.run(lambda: 1), "the function", "<lambda>", "use_dill=True")
    expect(SerializationError, lambda: t.run(echo, threading.Lock()), "argument 0", "lock")
    expect(SerializationError, lambda: t.run(echo, x=threading.Lock()), "keyword argument 'x'")
    assert len(t) == 0  # nothing was sent
    t.run(echo, "same task still usable")
    assert t.get(timeout=10) == ["same task still usable"]
    still_works("after bad arguments")


def unpicklable_results_and_exceptions_fail_in_get() -> None:
    multicore.initialize(workers=2)
    t = Task()
    t.run(returns_lock)
    exc = expect(SerializationError, t.get, "returns_lock", "lock", "pickle")
    still_works("after an unpicklable result")
    t = Task()
    t.run(raises_locked)
    exc = expect(RemoteError, t.get, "LockedError", "holding a lock")
    assert exc.type_name.endswith("LockedError") and "raises_locked" in exc.traceback, vars(exc)
    still_works("after an unpicklable exception")


def result_not_fitting_the_serialization_format() -> None:
    multicore.initialize(workers=2)
    t = Task()
    t.run(returns_set, serialization_format="json")
    expect(SerializationError, t.get, "returns_set", "json", "set")
    t = Task()
    t.run(returns_int, serialization_format="string")
    expect(SerializationError, t.get, "returns_int", "string", "int")
    t = Task()
    expect(ValueError, lambda: t.run(echo, 1, serialization_format="yaml"), "yaml", "serialization_format")
    t = Task()
    t.run(echo, {"a": [1, 2]}, serialization_format="json")
    t.run(echo, "text", serialization_format="string")
    assert t.get(timeout=10) == [{"a": [1, 2]}, "text"]
    still_works("after format errors")


def non_callable_and_unknown_options() -> None:
    multicore.initialize(workers=2)
    t = Task()
    expect(TypeError, lambda: t.run(42), "callable", "int")
    expect(TypeError, lambda: t.run("os.getpid"), "callable", "str")
    expect(TypeError, lambda: multicore.initialize(wrokers=2), "wrokers", "workers")
    expect(ValueError, lambda: multicore.initialize(workers=0), "workers")
    still_works("after a non-callable")


def payload_over_the_pools_max_payload() -> None:
    multicore.initialize(workers=2, max_payload=1 << 20)
    t = Task()
    expect(SharedMemoryError, lambda: t.run(echo, b"a" * (2 << 20)), "max payload is 1048576", "ranges()")
    assert len(t) == 0 and multicore.pool_info()["slots_in_use"] == 0
    t.run(big_result, 2 << 20)  # the result is too big on the way back
    expect(SerializationError, t.get, "result of __main__.big_result", "max payload is 1048576")
    still_works("after payloads over the limit")
    t = Task()
    t.run(big_result, 900_000)  # under the limit, through a segment
    assert len(t.get(timeout=10)[0]) == 900_000


def real_shared_memory_allocation_failure() -> None:
    multicore.initialize(workers=2)
    still_works("before")
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, resource.RLIM_INFINITY))  # parent only
    t = Task()
    expect(SharedMemoryError, lambda: t.run(echo, b"a" * (64 << 20)), "shared memory", "6710", "File too large")
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    t = Task()
    t.run(big_result_under_fsize_limit, 64 << 20, 16 << 20)  # the worker cannot send its result
    expect(SerializationError, t.get, "big_result_under_fsize_limit", "could not be sent back", "File too large")
    still_works("after allocation failures")


def keyboard_interrupt_in_get_stops_the_calls_and_keeps_the_pool() -> None:
    multicore.initialize(workers=2)
    assert wait_for(lambda: all(w["state"] == "idle" for w in multicore.pool_info()["workers"]), 10) is not None
    before = {w["pid"] for w in multicore.pool_info()["workers"]}
    t = Task()
    t.run(nap, 30)
    t.run(nap, 30)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    try:
        t.get()
    except KeyboardInterrupt:
        took = time.monotonic() - started
    else:
        raise AssertionError("no KeyboardInterrupt")
    assert took < 2.0, took  # not after the 30 s calls
    # The interrupted calls were stopped: their workers were killed and replaced.
    assert (
        wait_for(
            lambda: (
                all(w["state"] == "idle" for w in multicore.pool_info()["workers"])
                and not before & {w["pid"] for w in multicore.pool_info()["workers"]}
            ),
            5,
        )
        is not None
    )
    expect(MulticoreError, t.get, "already collected")
    still_works("after Ctrl-C")


# The engine's cheapest valid options, for calling _core.Pool directly.
ENGINE_OPTIONS = {
    "workers": 2,
    "slots": 4,
    "inline_size": 64,
    "worker_spin_us": 0,
    "parent_spin_us": 0,
    "max_payload": None,
    "segment_keep_bytes": 0,
}


def pool_options_out_of_the_engines_range_are_configuration_errors() -> None:
    exc = expect(ConfigurationError, lambda: multicore.initialize(workers=2, inline_size=32), "inline_size", "64")
    assert isinstance(exc, ValueError)  # still caught by `except ValueError`
    # The engine's own check, behind the binding, raises the same class (never a bare ValueError).
    options = ENGINE_OPTIONS
    expect(ConfigurationError, lambda: _core.Pool(**{**options, "slots": _core.MAX_SLOTS + 1}), "slots", "65536")
    expect(
        ConfigurationError, lambda: _core.Pool(**{**options, "inline_size": _core.MIN_INLINE_SIZE - 1}), "inline_size"
    )
    expect(ConfigurationError, lambda: _core.Pool(**{**options, "workers": _core.MAX_WORKERS + 1}), "workers", "1024")
    still_works("after refused options")


def the_binding_refuses_a_malformed_payload_with_multicore_errors() -> None:
    core = lifecycle.ensure_pool().core
    exc = expect(SerializationError, lambda: core.submit(0, 42), "not int")
    assert isinstance(exc, TypeError)  # still caught by `except TypeError`
    expect(SerializationError, lambda: core.submit(0, [b"ok", 42]), "not list")
    expect(ProtocolError, lambda: core.submit(1 << 31, b""), "2**31")
    assert multicore.pool_info()["slots_in_use"] == 0
    still_works("after malformed payloads")


def a_failed_system_call_is_a_multicore_os_error_with_its_errno() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_fds = len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself used
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds, hard))  # no descriptor left
    exc = expect(OSError, lambda: _core.Pool(**ENGINE_OPTIONS), "failed", "Too many open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert isinstance(exc, MulticoreOSError) and isinstance(exc, MulticoreError), type(exc).__mro__
    assert exc.errno == errno.EMFILE, (exc.errno, str(exc))


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
