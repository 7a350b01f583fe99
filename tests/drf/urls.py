from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tests.drf import app, books

router = DefaultRouter()
for prefix, view in [
    ("items", app.Items),
    ("unordered", app.UnorderedItems),
    ("paged", app.PagedItems),
    ("limited", app.LimitedItems),
    ("cursor", app.CursorItems),
    ("filtered", app.FilteredItems),
    ("mine", app.MyItems),
    ("wide", app.WideItems),
    ("unicode", app.UnicodeItems),
    ("uuids", app.UUIDItems),
    ("opted-out", app.OptedOutItems),
    ("exploding", app.ExplodingItems),
    ("locked", app.LockedUserItems),
    ("books", books.Books),
    ("books-paged", books.PagedBooks),
    ("books-cursor", books.CursorBooks),
    ("books-unordered", books.UnorderedBooks),
    ("books-annotated", books.AnnotatedBooks),
    ("books-shelf", books.ShelfBooks),
    ("books-distinct", books.DistinctBooks),
    ("books-distinct-on", books.DistinctOnBooks),
    ("books-union", books.UnionBooks),
    ("books-window", books.WindowBooks),
    ("books-raw", books.RawBooks),
    ("books-values", books.ValuesBooks),
    ("books-sliced", books.SlicedBooks),
    ("placements", books.Placements),
    ("books-own-paginator", books.OwnPaginatorBooks),
    ("books-shelf-cursor", books.ShelfCursorBooks),
    ("books-unpicklable", books.UnpicklableBooks),
]:
    router.register(prefix, view, basename="item" if prefix == "items" else prefix)

urlpatterns = [path("api/", include(router.urls))]
