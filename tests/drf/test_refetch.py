"""Workers fetch their own rows by primary key: the same bytes as DRF for every queryset shape,
and the shapes that cannot be refetched faithfully ship the parent's rows instead."""

from __future__ import annotations

import json

import pytest

from multicore import drf
from multicore.drf import rows
from tests.support import ON_POSTGRES
from tests.testapp.models import Book, Placement, Shelf, Tag

pytestmark = pytest.mark.urls("tests.drf.urls")


@pytest.fixture
def books(drf_db):
    shelves = [Shelf.objects.create(name=name) for name in ("north", "south", "east")]
    tags = {name: Tag.objects.create(name=name) for name in ("red", "blue", "green", "caf\u00e9")}
    created = Book.objects.bulk_create(
        Book(title=f"book-{(i * 37) % 101:03d}", rank=i % 10, shelf=shelves[i % 4] if i % 4 < 3 else None)
        for i in range(120)
    )
    names = list(tags)
    for i, book in enumerate(created):
        book.tags.set([tags[names[j]] for j in range(4) if (i >> j) & 1])
    Placement.objects.bulk_create(Placement(shelf_code=f"s{i % 3}", slot=i, label=f"p{i}") for i in range(30))
    return created


def _rows(response):
    data = json.loads(response.content)
    return data["results"] if isinstance(data, dict) else data


@pytest.mark.parametrize(
    "path",
    [
        "/api/books/?limit=50&offset=10",  # select_related + prefetch_related, limit/offset
        "/api/books/?limit=500",
        "/api/books-paged/?page=2",  # page numbers
        "/api/books-annotated/?limit=60",  # aggregate annotation, ordered by it
        "/api/books-shelf/?shelf=north&limit=40",  # get_queryset() override, Prefetch(to_attr=)
        "/api/books-shelf/?limit=100",
        "/api/books-distinct/?limit=100",  # distinct() over a many-to-many filter
    ],
)
def test_refetched_rows_are_byte_identical(compare, books, path):
    assert len(_rows(compare(path))) > 2


def test_cursor_pagination_every_page(compare, books):
    path, seen = "/api/books-cursor/", []
    while path:
        data = json.loads(compare(path).content)
        seen += [row["id"] for row in data["results"]]
        path = data["next"] and data["next"].replace("http://testserver", "")
    assert sorted(seen) == sorted(book.pk for book in books)


def test_unordered_queryset_yields_every_row_once(client, books):
    """No ORDER BY: the keys query (no joins) may come back in another order than DRF's query
    with joins would; each row is still served exactly once, with the same content."""
    drf.patch()
    try:
        before = drf.stats["parallel"]
        patched = _rows(client.get("/api/books-unordered/"))
        assert drf.stats["parallel"] == before + 1
    finally:
        drf.unpatch()
    plain = _rows(client.get("/api/books-unordered/"))
    assert sorted(row["id"] for row in patched) == sorted(book.pk for book in books)
    assert sorted(patched, key=lambda row: row["id"]) == sorted(plain, key=lambda row: row["id"])


SHIPPED = [
    ("/api/books-union/", "combinator"),
    ("/api/books-window/?limit=80", "window"),
    ("/api/books-raw/", "raw"),
    ("/api/books-values/?limit=90", "values"),
    ("/api/books-sliced/", "sliced"),
    ("/api/placements/", "pk"),
    ("/api/books-own-paginator/?limit=90", "paginator"),
    ("/api/books-unpicklable/?limit=90", "unpicklable"),
]
if ON_POSTGRES:
    SHIPPED.append(("/api/books-distinct-on/", "distinct-fields"))


@pytest.mark.parametrize("path, reason", SHIPPED)
def test_querysets_that_cannot_be_refetched_ship_the_rows(compare, books, path, reason):
    assert len(_rows(compare(path, expect={"parallel": 1, f"shipped:{reason}": 1}))) > 2


def test_a_cursor_ordered_on_a_relation_ships_the_rows(compare, books):
    """Only the first page: DRF itself cannot follow a cursor whose position is ``str()`` of a
    related object."""
    data = json.loads(compare("/api/books-shelf-cursor/", expect={"parallel": 1, "shipped:paginator": 1}).content)
    assert len(data["results"]) == 40 and data["next"]


def test_a_row_gone_before_the_refetch_is_reported(books):
    queryset = Book.objects.order_by("id")
    keys = [books[0].pk, books[1].pk]
    assert [book.pk for book in rows.fetch(queryset, keys[::-1])] == keys[::-1]
    Book.objects.filter(pk=keys[1]).delete()
    with pytest.raises(rows.RowsChanged):
        rows.fetch(queryset, keys)


def test_a_short_page_from_a_long_page_size_is_served_by_the_parent(compare, books, settings):
    from tests.drf.conftest import MULTICORE

    settings.MULTICORE = {**MULTICORE, "drf-min-items": 30}
    compare("/api/books/?limit=40&offset=100", expect="fallback:small")  # 20 rows left
    compare("/api/books/?limit=20", expect="fallback:small")  # known before any query
    assert drf.stats["parallel"] >= 0


def test_a_row_deleted_between_the_keys_and_the_refetch_is_served_by_drf(compare, books, monkeypatch):
    """The workers find a key gone: the whole list is served again by DRF, with the same bytes."""
    keys_of = rows.keys_of

    def keys_then_delete(page):
        keys = keys_of(page)
        Book.objects.filter(pk=keys[-1]).delete()  # committed: the workers' connections see it
        return keys

    monkeypatch.setattr(rows, "keys_of", keys_then_delete)
    response = compare("/api/books/?limit=50", expect="fallback:changed")
    assert len(_rows(response)) == 50


def test_range_sizes_cover_the_page_biggest_first():
    from multicore.drf.patch import MIN_RANGE_ROWS, range_sizes

    for count in (1, 2, 3, 79, 80, 199, 200, 201, 1000, 3000, 5000, 12345):
        for workers in (1, 2, 3, 4, 8):
            sizes = range_sizes(count, workers)
            assert sum(sizes) == count and min(sizes) >= 1, (count, workers, sizes)
            assert sizes == sorted(sizes, reverse=True), (count, workers, sizes)
            assert len(sizes) >= min(count, workers), (count, workers, sizes)
            if count >= workers:  # the same number of ranges for every worker
                assert len(sizes) % workers == 0, (count, workers, sizes)
            if count >= 2 * workers * MIN_RANGE_ROWS:
                assert min(sizes) >= MIN_RANGE_ROWS // 2, (count, workers, sizes)
    assert range_sizes(80, 2) == [40, 40]  # a short page: one range per worker
    assert range_sizes(3000, 2) == [1500, 1500]
    assert range_sizes(5000, 2) == [1250, 1250, 1250, 1250]
    assert range_sizes(20000, 2) == [5000, 5000, 2500, 2500, 1250, 1250, 1250, 1250]


def test_range_sizes_shrink_to_the_minimum_in_equal_turns(monkeypatch):
    import importlib

    patch_module = importlib.import_module("multicore.drf.patch")
    monkeypatch.setattr(patch_module, "MIN_RANGE_ROWS", 100)
    assert patch_module.range_sizes(1000, 2) == [250, 250, 125, 125, 125, 125]
    assert patch_module.range_sizes(300, 2) == [150, 150]  # not three of 100: the third would run alone
    assert patch_module.range_sizes(3000, 2) == [750, 750, 375, 375, 188, 188, 187, 187]
    assert patch_module.range_sizes(1000, 3) == [167, 167, 167, 167, 166, 166]


def test_a_page_in_many_ranges_is_byte_identical(compare, books, monkeypatch, caplog):
    import importlib

    # The module: ``multicore.drf.patch`` as an attribute is the patch() function.
    monkeypatch.setattr(importlib.import_module("multicore.drf.patch"), "MIN_RANGE_ROWS", 10)
    with caplog.at_level("DEBUG", logger="multicore.drf"):
        compare("/api/books/?limit=110&offset=5")
    assert "(110 rows, 6 ranges)" in caplog.text, caplog.text
