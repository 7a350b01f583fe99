"""Payloads of any size both ways, and a clear error where the memory limit is hit."""

import pytest

from multicore import Task, initialize, shutdown
from multicore.exceptions import SerializationError, SharedMemoryError
from tests.core import helpers

SIZES = [1_000, 3_900, 4_000, 100_000, 10_000_000, 256_000_000]


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n:_}B")
def test_bytes_round_trip_both_ways(pool, size):
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    task = Task()
    task.run(helpers.identity, data)
    task.run(helpers.echo_len, data)
    echoed, (length, head, tail) = task.get()
    assert echoed == data
    assert (length, head, tail) == (size, data[:4], data[-4:])


def test_large_results_reuse_segments(pool):
    # Many mid-size results in one Task: segments are recycled, all results are intact.
    task = Task()
    for n in range(20):
        task.run(helpers.make_bytes, 1_000_000 + n)
    results = task.get()
    assert [len(r) for r in results] == [1_000_000 + n for n in range(20)]
    assert all(set(r) == {0xAB} for r in results)


def test_argument_over_the_payload_limit_is_a_clear_error():
    shutdown()
    initialize(workers=1, max_payload=1_000_000)
    try:
        task = Task()
        with pytest.raises(SharedMemoryError, match="max payload is 1000000 bytes"):
            task.run(helpers.identity, b"x" * 2_000_000)
        task.run(helpers.make_bytes, 2_000_000)  # fine going out, too big coming back
        task.run(helpers.identity, b"small")
        with pytest.raises(SerializationError, match="max payload is 1000000"):
            task.get()
        task = Task()
        task.run(helpers.identity, b"still works")
        assert task.get() == [b"still works"]
    finally:
        shutdown()
