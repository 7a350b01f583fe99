"""Views over related rows: every queryset shape the refetch-by-primary-key path must serve
faithfully, and each shape that makes it ship the parent's rows instead (tests/drf/test_refetch.py)."""

from __future__ import annotations

from django.db.models import Count, F, Prefetch, Window
from django.db.models.functions import RowNumber
from rest_framework import serializers, viewsets
from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination

from tests.testapp.models import Book, Placement, Tag


class BookSerializer(serializers.ModelSerializer):
    shelf_name = serializers.SerializerMethodField()
    tag_names = serializers.SerializerMethodField()
    extra = serializers.SerializerMethodField()

    class Meta:
        model = Book
        fields = ["id", "title", "rank", "shelf_name", "tag_names", "extra"]

    def get_shelf_name(self, book):
        return book.shelf.name if book.shelf_id else None

    def get_tag_names(self, book):
        tags = getattr(book, "sorted_tags", None)
        return [tag.name for tag in (tags if tags is not None else book.tags.all())]

    def get_extra(self, book):
        # Annotations, when the queryset has them.
        return [getattr(book, name, None) for name in ("tag_count", "position", "double_rank")]


class Books(viewsets.ReadOnlyModelViewSet):
    queryset = Book.objects.select_related("shelf").prefetch_related("tags").order_by("rank", "id")
    serializer_class = BookSerializer
    pagination_class = LimitOffsetPagination


class _Pages(PageNumberPagination):
    page_size = 30


class PagedBooks(Books):
    pagination_class = _Pages


class _RankCursor(CursorPagination):
    ordering = ("rank", "id")
    page_size = 25


class CursorBooks(Books):
    pagination_class = _RankCursor


class UnorderedBooks(Books):
    queryset = Book.objects.select_related("shelf")
    pagination_class = None


class AnnotatedBooks(Books):
    queryset = (
        Book.objects.select_related("shelf")
        .annotate(tag_count=Count("tags"), double_rank=F("rank") * 2)
        .order_by("-tag_count", "id")
    )


class ShelfBooks(Books):
    """get_queryset() depending on the request, with a Prefetch object to an attribute."""

    def get_queryset(self):
        queryset = Book.objects.prefetch_related(
            Prefetch("tags", queryset=Tag.objects.order_by("-name"), to_attr="sorted_tags")
        ).order_by("-rank", "title", "id")
        shelf = self.request.query_params.get("shelf")
        return queryset.filter(shelf__name=shelf) if shelf else queryset


class DistinctBooks(Books):
    """A many-to-many filter repeats rows; distinct() removes them (refetchable)."""

    queryset = Book.objects.filter(tags__name__in=["red", "blue"]).distinct().order_by("title", "id")


# The shapes that cannot be refetched by primary key: the parent's rows are shipped.


class DistinctOnBooks(Books):  # PostgreSQL only
    queryset = Book.objects.order_by("rank", "-id").distinct("rank")
    pagination_class = None


class UnionBooks(Books):
    queryset = Book.objects.filter(rank__lt=2).union(Book.objects.filter(rank__gte=7)).order_by("id")
    pagination_class = None


class WindowBooks(Books):
    queryset = Book.objects.annotate(position=Window(RowNumber(), order_by=[F("rank").desc(), F("id").asc()])).order_by(
        "id"
    )


class RawBooks(Books):
    pagination_class = None

    def get_queryset(self):
        return Book.objects.raw(f"SELECT * FROM {Book._meta.db_table} ORDER BY id")

    def filter_queryset(self, queryset):
        return queryset


class _BookValues(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()


class ValuesBooks(Books):
    queryset = Book.objects.values("id", "title").order_by("id")
    serializer_class = _BookValues


class SlicedBooks(Books):
    pagination_class = None

    def get_queryset(self):
        return super().get_queryset()[:70]


class _PlacementSerializer(serializers.Serializer):
    shelf_code = serializers.CharField()
    slot = serializers.IntegerField()
    label = serializers.CharField()


class Placements(viewsets.ReadOnlyModelViewSet):
    queryset = Placement.objects.order_by("shelf_code", "slot")
    serializer_class = _PlacementSerializer
    pagination_class = None


class _LoggingPages(LimitOffsetPagination):
    """A paginator of its own: it may need whole rows, so they are shipped."""

    def paginate_queryset(self, queryset, request, view=None):
        return super().paginate_queryset(queryset, request, view)


class OwnPaginatorBooks(Books):
    pagination_class = _LoggingPages


class _ShelfCursor(CursorPagination):
    ordering = ("shelf", "id")
    page_size = 40  # 30 books a shelf: the page ends on the second shelf, which the link names


class ShelfCursorBooks(Books):
    """A cursor ordered on a foreign key: its links carry ``str(book.shelf)``, which only the
    instance gives (the keys query would give the shelf's id)."""

    queryset = Book.objects.select_related("shelf").prefetch_related("tags").filter(shelf__isnull=False)
    pagination_class = _ShelfCursor


class Unpicklable(int):
    def __reduce__(self):
        raise TypeError("this value cannot be pickled")


class UnpicklableBooks(Books):
    def get_queryset(self):
        return super().get_queryset().filter(rank__gte=Unpicklable(1))
