"""Task.map() and Task.imap(): one function over many items, chunked, results in order."""

import itertools

import pytest

from multicore import Task
from multicore._pool.task import auto_chunksize
from multicore.exceptions import (
    ConfigurationError,
    MulticoreError,
    RemoteTraceback,
    SerializationError,
    TaskCompleteError,
    TimeoutExceededError,
    WorkerLostError,
)
from tests.core import helpers
from tests.support import wait_until


def test_map_returns_results_in_order_whatever_finishes_first(pool):
    delays = [0.2, 0.0, 0.1, 0.0, 0.05, 0.0]
    assert Task().map(helpers.sleep_for, delays, chunksize=1) == delays


@pytest.mark.parametrize("items", [list(range(1001)), tuple(range(50)), range(333), (i for i in range(77))])
def test_map_matches_the_builtin_on_sized_and_unsized_input(pool, items):
    expected = [x * x for x in items] if not hasattr(items, "__next__") else [x * x for x in range(77)]
    assert Task().map(helpers.square, items) == expected


def test_map_chunks_by_length_and_workers(pool):
    assert auto_chunksize(20_000, 2) == 1250
    assert auto_chunksize(8, 2) == 1
    assert auto_chunksize(0, 2) == 1
    task = Task()
    assert task.map(helpers.square, range(8)) == [x * x for x in range(8)]
    assert len(task) == 8  # one call per item: 8 items, 2 workers
    task = Task()
    assert task.map(helpers.square, range(1000)) == [x * x for x in range(1000)]
    assert len(task) == 16  # eight chunks per worker
    task = Task()
    task.map(helpers.square, range(100), chunksize=30)
    assert len(task) == 4


def test_empty_input(pool):
    assert Task().map(helpers.square, []) == []
    assert list(Task().imap(helpers.square, [])) == []
    assert list(Task().imap(helpers.square, iter(()))) == []


def test_map_raises_the_items_own_exception_with_the_remote_traceback(pool):
    with pytest.raises(ValueError) as info:
        Task().map(helpers.fail_at_three, range(10), chunksize=2)
    assert info.value.args == ("three", 3)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_at_three" in str(info.value.__cause__)
    assert Task().map(helpers.square, [3]) == [9], "the pool is still usable"


def test_imap_yields_results_before_the_failing_item_then_raises_it(pool):
    seen = []
    with pytest.raises(ValueError, match="three"):
        for x in Task().imap(helpers.fail_at_three, range(10), chunksize=1):
            seen.append(x)
    assert seen == [0, 1, 2]
    assert wait_until(lambda: pool()["slots_in_use"] == 0), "the calls in flight were discarded"


def test_imap_streams_an_endless_generator_with_bounded_calls_in_flight(pool):
    consumed = []

    def numbers():
        for i in itertools.count():
            consumed.append(i)
            yield i

    results = Task().imap(helpers.square, numbers())
    assert list(itertools.islice(results, 50)) == [i * i for i in range(50)]
    window = 4 * 2  # chunks in flight: four per worker, chunksize 1 for an unsized input
    assert len(consumed) <= 50 + window
    results.close()
    assert wait_until(lambda: pool()["slots_in_use"] == 0)


def test_imap_with_a_sized_input_and_explicit_chunks(pool):
    assert list(Task().imap(helpers.square, range(1000))) == [x * x for x in range(1000)]
    assert list(Task().imap(helpers.square, range(25), chunksize=3)) == [x * x for x in range(25)]


def test_map_timeout_stops_the_calls_like_get(pool):
    with pytest.raises(TimeoutExceededError):
        Task().map(helpers.sleep_for, [0.0, 30.0, 0.0], chunksize=1, timeout=0.3)
    assert wait_until(lambda: pool()["slots_in_use"] == 0)
    assert Task().map(helpers.square, [2]) == [4]


def test_task_timeout_applies_to_map_and_each_imap_result(pool):
    with pytest.raises(TimeoutExceededError):
        Task(timeout=0.3).map(helpers.sleep_for, [30.0])
    results = Task().imap(helpers.sleep_for, [0.0, 30.0], chunksize=1, timeout=0.5)
    assert next(results) == 0.0
    with pytest.raises(TimeoutExceededError):
        next(results)
    assert wait_until(lambda: pool()["slots_in_use"] == 0)
    assert list(Task().imap(helpers.square, [5])) == [25]


def test_worker_death_during_a_map_is_a_worker_lost_error(pool):
    with pytest.raises(WorkerLostError) as info:
        Task().map(helpers.kill_self_at_three, range(8), chunksize=1)
    assert info.value.signal == 9
    assert Task().map(helpers.square, range(4)) == [0, 1, 4, 9], "the pool replaced the worker"


def test_worker_death_during_an_imap(pool):
    seen = []
    with pytest.raises(WorkerLostError):
        for x in Task().imap(helpers.kill_self_at_three, range(8), chunksize=1):
            seen.append(x)
    # Raised as soon as the worker dies, like get(): the results taken before are in order.
    assert seen == list(range(len(seen))) and len(seen) <= 3
    assert list(Task().imap(helpers.square, range(3))) == [0, 1, 4]


@pytest.mark.parametrize("chunksize", [0, -1, 1.5, True, "10"])
def test_chunksize_is_validated(pool, chunksize):
    for method in ("map", "imap"):
        with pytest.raises(ConfigurationError, match="chunksize must be a positive integer") as info:
            getattr(Task(), method)(helpers.square, range(3), chunksize=chunksize)
        assert isinstance(info.value, MulticoreError) and isinstance(info.value, ValueError)
    assert pool()["slots_in_use"] == 0


def test_map_uses_up_the_task_and_needs_one_of_its_own(pool):
    task = Task()
    assert task.map(helpers.square, [1, 2]) == [1, 4]
    with pytest.raises(TaskCompleteError):
        task.map(helpers.square, [1])
    with pytest.raises(TaskCompleteError):
        task.run(helpers.square, 1)
    task = Task()
    results = task.imap(helpers.square, [1, 2])
    with pytest.raises(TaskCompleteError):
        task.get()
    assert list(results) == [1, 4]
    task = Task()
    task.run(helpers.square, 1)
    with pytest.raises(MulticoreError, match="needs a Task of its own"):
        task.map(helpers.square, [1])
    assert task.get() == [1]
    with pytest.raises(TypeError, match="needs a callable"):
        Task().map(42, [1])


def test_an_unpicklable_item_fails_the_map_and_frees_what_was_sent(pool):
    import threading

    items = [1, 2, 3, threading.Lock()]
    for method in ("map", "imap"):
        with pytest.raises(SerializationError, match="argument 1"):
            list(getattr(Task(), method)(helpers.square, items, chunksize=1))
        assert wait_until(lambda: pool()["slots_in_use"] == 0)
