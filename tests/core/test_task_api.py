"""Task().run()/get(): the API of the original multicore, on Python 3."""

import pickle
import subprocess
import sys

import pytest

from multicore import Task
from multicore.exceptions import (
    ConfigurationError,
    MulticoreError,
    MulticoreTypeError,
    RemoteError,
    RemoteTraceback,
    SerializationError,
    TaskCompleteError,
)
from tests.core import helpers
from tests.support import ROOT


def test_readme_example_runs_unchanged():
    # The example, verbatim, run as a script (functions live in __main__).
    proc = subprocess.run(
        [sys.executable, "tests/core/readme_example.py"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    assert first == ", ".join(str(i) for i in range(20))
    assert second.replace(", ", ",") == ",".join(str(i) for i in range(100))


def test_results_come_back_in_submission_order(pool):
    task = Task()
    delays = [0.05, 0.0, 0.03, 0.0, 0.01]
    for i, delay in enumerate(delays):
        task.run(helpers.sleep_then, delay, i)
    assert task.get() == list(range(len(delays)))


def test_kwargs_reach_the_function(pool):
    task = Task()
    task.run(helpers.add, 1, b=2, c=3)
    task.run(helpers.add, 1, c=10)
    assert task.get() == [6, 11]


def test_json_and_string_formats(pool):
    task = Task()
    task.run(helpers.as_json, 3, serialization_format="json")
    task.run(helpers.as_string, 7, serialization_format="string")
    task.run(helpers.as_string, 8)
    assert task.get() == [{"n": 3, "items": [0, 1, 2]}, "7", "8"]


def test_unknown_serialization_format_is_a_value_error_at_run(pool):
    task = Task()
    with pytest.raises(ConfigurationError, match="serialization_format must be one of"):
        task.run(helpers.identity, 1, serialization_format="yaml")
    task.run(helpers.identity, 2)
    assert task.get() == [2]


def test_use_dill_ships_lambdas_and_closures(pool):
    offset = 10
    task = Task()
    task.run(lambda x: x * 2, 21, use_dill=True)
    task.run(lambda x: x + offset, 5, use_dill=True)
    assert task.get() == [42, 15]


def test_unpicklable_function_fails_at_run_naming_it_and_task_stays_usable(pool):
    task = Task()
    with pytest.raises(SerializationError, match="lambda") as info:
        task.run(lambda x: x, 1)
    assert "use_dill=True" in str(info.value)
    assert pool()["slots_in_use"] == 0, "nothing may be sent"
    task.run(helpers.identity, 3)
    assert task.get() == [3]


def test_unpicklable_argument_is_named(pool):
    import threading

    task = Task()
    with pytest.raises(SerializationError, match="argument 1"):
        task.run(helpers.add, 1, threading.Lock())
    with pytest.raises(SerializationError, match="keyword argument 'c'"):
        task.run(helpers.add, 1, c=threading.Lock())


def test_non_callable_is_a_type_error(pool):
    with pytest.raises(MulticoreTypeError, match="callable"):
        Task().run(42)


def test_run_after_get_and_second_get_raise_task_complete(pool):
    task = Task()
    task.run(helpers.identity, 1)
    assert task.get() == [1]
    with pytest.raises(TaskCompleteError, match="create a new Task"):
        task.run(helpers.identity, 2)
    with pytest.raises(TaskCompleteError):
        task.get()


def test_empty_task_gets_empty_list(pool):
    assert Task().get() == []


def test_exception_keeps_type_args_and_remote_traceback(pool):
    task = Task()
    task.run(helpers.identity, 1)
    task.run(helpers.raise_value_error, "boom")
    with pytest.raises(ValueError) as info:
        task.get()
    assert info.value.args == ("boom", 42)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_value_error" in str(cause) and "raise ValueError" in str(cause)
    # The pool is fine afterwards.
    task = Task()
    task.run(helpers.identity, 5)
    assert task.get() == [5]


def test_exception_that_cannot_be_rebuilt_arrives_as_remote_error(pool):
    task = Task()
    task.run(helpers.raise_two_arg_error)
    with pytest.raises(RemoteError) as info:
        task.get()
    err = info.value
    assert isinstance(err, MulticoreError)
    assert err.type_name == "tests.core.helpers.TwoArgError"
    assert err.message == "left/right"
    assert "raise_two_arg_error" in err.traceback
    assert pickle.loads(pickle.dumps(err)).type_name == err.type_name


def test_task_inside_a_worker_is_none(pool):
    task = Task()
    task.run(helpers.nested_task)
    assert task.get() == [True]


def test_calls_spread_over_all_workers(pool):
    pids = set()
    for _ in range(20):
        task = Task()
        for _ in range(8):
            task.run(helpers.sleep_then, 0.01, None)
            task.run(helpers.pid_of)
        pids.update(p for p in task.get() if p)
        if len(pids) == 2:
            break
    assert pids == {w["pid"] for w in pool()["workers"]}


def test_default_timeout_comes_from_the_task(pool):
    from multicore.exceptions import TimeoutExceededError

    task = Task(timeout=0.2)
    task.run(helpers.sleep_then, 5, None)
    with pytest.raises(TimeoutExceededError, match=r"timed out after 0\.2s"):
        task.get()
