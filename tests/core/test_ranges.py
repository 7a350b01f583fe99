"""ranges(): cover 0..len exactly once, about one range per worker."""

import pytest

from multicore.exceptions import ConfigurationError
from multicore.utils import ranges


def covered(pairs):
    out = []
    for start, end in pairs:
        assert start < end
        out.extend(range(start, end))
    return out


@pytest.mark.parametrize("count", [0, 1, 2, 7, 100, 101, 1000])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_ranges_cover_every_index_once(count, workers):
    pairs = list(ranges(range(count), number_of_workers=workers))
    assert covered(pairs) == list(range(count))
    assert len(pairs) <= workers


def test_min_range_size_holds_for_all_but_the_last():
    pairs = list(ranges(list(range(95)), min_range_size=20, number_of_workers=8))
    assert all(end - start >= 20 for start, end in pairs[:-1])
    assert covered(pairs) == list(range(95))


def test_default_worker_count_is_the_pool_size(pool):
    assert len(list(ranges(range(100)))) == 2


@pytest.mark.parametrize("bad", [{"min_range_size": -1}, {"number_of_workers": 0}, {"min_range_size": 1.5}])
def test_bad_arguments_are_explained(bad):
    with pytest.raises(ConfigurationError, match="must be"):
        list(ranges(range(10), **bad))
