"""Module-level functions for tests: workers import them by reference, like user code."""

import os
import signal
import time


def identity(x):
    return x


def pid_of(_=None):
    return os.getpid()


def add(a, b=0, *, c=0):
    return a + b + c


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def raise_value_error(message):
    raise ValueError(message, 42)


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_two_arg_error():
    raise TwoArgError("left", "right")


def nested_task():
    import multicore

    return multicore.Task() is None


def kill_self(sig=signal.SIGKILL):
    import faulthandler

    faulthandler.disable()  # pytest's faulthandler would print a "fatal error" dump for the SIGSEGV
    os.kill(os.getpid(), sig)
    time.sleep(10)


def make_bytes(n):
    return b"\xab" * n


def echo_len(data):
    return len(data), data[:4], data[-4:]


def as_string(item):
    return str(item)


def as_json(n):
    return {"n": n, "items": list(range(n))}


def square(x):
    return x * x


def fail_at_three(x):
    if x == 3:
        raise ValueError("three", x)
    return x


def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


def kill_self_at_three(x):
    if x == 3:
        kill_self()
    time.sleep(0.05)
    return x


def touch(path):
    """A side effect a test can look for: proof that a call started."""
    with open(path, "w") as f:
        f.write("ran")
    return path
