"""Scenarios of tests/faults/test_exceptions.py (run as ``python -m tests.faults.scenarios.exceptions <scenario>``)."""

import os

import multicore
from multicore import Task
from multicore.exceptions import RemoteError, RemoteTraceback


class TwoArgs(Exception):
    """Pickles, but cannot be rebuilt: its args hold one message, __init__ wants two values."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


def raise_value_error(x):
    raise ValueError("bad value", x)


def raise_two_args():
    raise TwoArgs(7, "no rebuild")


def raise_keyboard_interrupt():
    raise KeyboardInterrupt("from a task")


def raise_system_exit():
    raise SystemExit(3)


def pid():
    return os.getpid()


def one(fn, *args):
    t = Task()
    t.run(fn, *args)
    try:
        t.get(timeout=10)
    except BaseException as exc:  # noqa: BLE001 - the caller inspects whatever came back
        return exc
    raise AssertionError("nothing raised")


def exceptions_come_back_with_type_args_and_remote_traceback() -> None:
    multicore.initialize(workers=1)
    t = Task()
    t.run(pid)
    worker = t.get(timeout=10)[0]
    exc = one(raise_value_error, 42)
    assert type(exc) is ValueError and exc.args == ("bad value", 42), repr(exc)
    assert isinstance(exc.__cause__, RemoteTraceback), repr(exc.__cause__)
    assert "raise_value_error" in str(exc.__cause__) and "ValueError" in str(exc.__cause__)
    exc = one(raise_two_args)
    assert type(exc) is RemoteError, repr(exc)
    assert exc.type_name == "__main__.TwoArgs", exc.type_name
    assert exc.message == "7: no rebuild", exc.message
    assert "raise_two_args" in exc.traceback and "TwoArgs" in str(exc), str(exc)
    exc = one(raise_keyboard_interrupt)
    assert type(exc) is KeyboardInterrupt and exc.args == ("from a task",), repr(exc)
    assert "raise_keyboard_interrupt" in str(exc.__cause__)
    exc = one(raise_system_exit)
    assert type(exc) is SystemExit and exc.code == 3, repr(exc)
    # None of that killed or replaced the worker.
    t = Task()
    t.run(pid)
    assert t.get(timeout=10) == [worker]
    assert multicore.pool_info()["workers"][0]["respawns"] == 0


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
