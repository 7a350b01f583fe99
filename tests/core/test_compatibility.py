"""The original's public surface, name by name: code written for praekelt's django-multicore and
PyPI ``multicore`` 0.1.1 runs unchanged (docs/compatibility.md). The Django names are in
tests/django/test_compatibility.py."""

from __future__ import annotations

import pytest

import multicore
from multicore import Task, initialize, shutdown
from multicore.exceptions import (
    InputBufferTooSmallError,
    MulticoreError,
    NoAvailableInputBufferError,
    TaskCompleteError,
    TimeoutExceededError,
)
from multicore.utils import ranges
from tests.core import helpers

USERS = [{"username": f"user{i}"} for i in range(20)]


def render(start, end):
    return "".join(user["username"] for user in USERS[start:end])


@pytest.fixture(autouse=True)
def no_pool_left():
    shutdown()
    yield
    shutdown()


def test_the_originals_own_test_runs_unchanged():
    """The shape of the original's test_base: initialize(force=True), ranges(), run(), get()."""
    initialize(force=True)
    task = Task()
    for start, end in ranges(USERS):
        task.run(render, start, end)
    assert "".join(task.get()) == render(0, len(USERS))


def test_force_is_accepted_positionally_and_changes_nothing():
    initialize(True)
    first = multicore.pool_info()["supervisor_pid"]
    initialize(force=True)
    assert multicore.pool_info()["supervisor_pid"] == first
    assert multicore.pool_info()["running"]


def test_run_keywords_and_load_guard():
    task = Task(max_load_average=None)
    task.run(helpers.as_string, 1, serialization_format="string")
    task.run(helpers.identity, {"a": [1]}, serialization_format="json")
    task.run(helpers.identity, (1, 2), serialization_format="pickle", use_dill=False)
    assert task.get(timeout=10.0) == ["1", {"a": [1]}, (1, 2)]
    with pytest.raises(TaskCompleteError):
        task.get()


def test_module_constants():
    assert multicore._core.usable_cpus() == multicore.NUMBER_OF_WORKERS  # no pool: what it would start
    initialize(workers=2)
    assert multicore.NUMBER_OF_WORKERS == 2
    assert multicore.pool_info()["options"].slots == multicore.BUFFER_DEPTH
    assert isinstance(multicore.MMAP_SIZE, int) and multicore.PY3 is True
    assert list(ranges(range(10))) == [(0, 5), (5, 10)]  # one range per worker, as before
    with pytest.raises(AttributeError):
        multicore.NO_SUCH_NAME  # noqa: B018 - the module's __getattr__ still refuses unknown names


def test_exceptions_keep_their_names_and_hierarchy():
    for cls in (TimeoutExceededError, NoAvailableInputBufferError, InputBufferTooSmallError, TaskCompleteError):
        assert issubclass(cls, MulticoreError)
    assert issubclass(TimeoutExceededError, TimeoutError)
    task = Task()
    task.run(helpers.sleep_then, 5, None)
    with pytest.raises(TimeoutExceededError):
        task.get(timeout=0.2)
