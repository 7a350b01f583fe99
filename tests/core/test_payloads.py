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


def test_large_buffers_inside_containers_keep_their_types(pool):
    # Buffers >= 256 KiB travel beside the pickle as parts of their own (the out-of-band path).
    big = bytes(range(256)) * 2048
    nested = {"a": [big, bytearray(big)], "b": (b"small", big[:300_000])}
    task = Task()
    task.run(helpers.identity, nested)
    task.run(helpers.identity, bytearray(big))
    task.run(helpers.add, [big], [bytearray(b"y" * 300_000)], c=[])
    got_nested, got_bytearray, got_list = task.get()
    assert got_nested == nested
    assert type(got_nested["a"][1]) is bytearray and type(got_nested["a"][0]) is bytes
    assert type(got_bytearray) is bytearray and got_bytearray == big
    assert got_list == [big, bytearray(b"y" * 300_000)]


def test_the_same_large_buffer_twice_arrives_twice(pool):
    big = b"z" * 500_000
    task = Task()
    task.run(helpers.identity, (big, big))
    (pair,) = task.get()
    assert pair == (big, big)
