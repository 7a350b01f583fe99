"""DRF endpoints (served in parallel by the multicore list patch) and views using Task directly."""

import os
import time
from collections import Counter

from django.http import JsonResponse
from rest_framework import permissions, viewsets
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination

import multicore
from catalog import analysis
from catalog.models import Category, Product
from catalog.serializers import CategorySerializer, LightProductSerializer, ProductSerializer
from multicore.utils import ranges


class BigLimitOffset(LimitOffsetPagination):
    default_limit = 50
    max_limit = 10_000


class BigPages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 10_000


class CreatedCursor(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 10_000


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """Products, limit/offset pagination, ``?search=``, ``?ordering=`` and ``?category=``."""

    queryset = Product.objects.select_related("category", "owner")
    serializer_class = ProductSerializer
    pagination_class = BigLimitOffset
    filter_backends = [SearchFilter, OrderingFilter]
    search_fields = ["name", "description", "sku"]
    ordering_fields = ["id", "name", "price", "stock", "created"]
    # The patch serializes in parallel only while a CPU is idle (0: always; the tests use it).
    multicore_min_idle_cpus = int(os.environ.get("MULTICORE_MIN_IDLE_CPUS", "1"))

    def get_queryset(self):
        queryset = super().get_queryset()
        category = self.request.query_params.get("category")
        return queryset.filter(category__slug=category) if category else queryset


class LightProductViewSet(ProductViewSet):
    """The same list with a lighter serializer (about 0.05 ms per row)."""

    serializer_class = LightProductSerializer


class ProductPageViewSet(ProductViewSet):
    pagination_class = BigPages


class ProductCursorViewSet(ProductViewSet):
    pagination_class = CreatedCursor
    filter_backends = [SearchFilter]  # the cursor fixes the ordering


class ProductFullListViewSet(ProductViewSet):
    """Every matching product in one unpaginated list."""

    pagination_class = None


class SequentialProductViewSet(ProductViewSet):
    """The same endpoint with the patch turned off for this view only."""

    multicore_list = False


class MyProductViewSet(ProductViewSet):
    """The signed-in user's products: the queryset depends on ``request.user``."""

    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return super().get_queryset().filter(owner=self.request.user)


class CategoryViewSet(viewsets.ReadOnlyModelViewSet):
    """Categories, unpaginated and deliberately unordered."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    pagination_class = None


def keyword_counts(start: int, end: int) -> tuple[dict[str, int], int]:
    """Word frequencies of products ``start..end`` (by primary key), and who computed them."""
    counts: Counter[str] = Counter()
    for description in Product.objects.order_by("pk").values_list("description", flat=True)[start:end]:
        counts.update(analysis.word_counts(description))
    return dict(counts), os.getpid()


def keyword_cloud(request):
    """The 20 most common words of product descriptions, counted with ``multicore.Task``."""
    began = time.perf_counter()
    task = multicore.Task()
    if task is not None:
        for start, end in ranges(Product.objects.all()):
            task.run(keyword_counts, start, end)
        parts = task.get()
    else:  # the machine is busy (or this is a worker): do it here
        parts = [keyword_counts(0, Product.objects.count())]
    total: Counter[str] = Counter()
    for counts, _pid in parts:
        total.update(counts)
    return JsonResponse(
        {
            "keywords": [word for word, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:20]],
            "parallel": task is not None,
            "computed_by": sorted({pid for _, pid in parts}),
            "served_by": os.getpid(),
            "seconds": round(time.perf_counter() - began, 4),
        }
    )


def _report_response(rows, parallel, pids, began):
    """The report views' JSON: the numbers, who computed them, who served, and how long it took."""
    return JsonResponse(
        {
            "categories": rows,
            "parallel": parallel,
            "computed_by": pids,
            "served_by": os.getpid(),
            "seconds": round(time.perf_counter() - began, 4),
        }
    )


def category_report(request):
    """Per-category quality statistics (the ``catalog_report`` command's numbers) as JSON."""
    from catalog.report import build_report

    began = time.perf_counter()
    rows, parallel, pids = build_report()
    return _report_response(rows, parallel, pids, began)


async def async_report(request):
    """The /report/ numbers from an async view: the scoring awaited on this server process's pool
    with ``arun()``/``aget()`` while the event loop serves other requests. ``?inline=1`` runs the
    same work in this process instead (the demo and the benchmark compare the two); ``?hold=``
    see ``catalog.report.abuild_report``."""
    from catalog.report import abuild_report

    began = time.perf_counter()
    rows, parallel, pids = await abuild_report(
        parallel=request.GET.get("inline") != "1", hold=float(request.GET.get("hold", 0))
    )
    return _report_response(rows, parallel, pids, began)


def pool(request):
    """This server process's pid and its multicore pool (supervisor and worker pids).

    ``?hold=SECONDS`` first keeps a pool worker busy that long (one Task running ``time.sleep``):
    the server tests kill a server process in the middle of such a request.
    """
    hold = float(request.GET.get("hold", 0))
    if hold > 0:
        task = multicore.Task()
        if task is not None:
            task.run(time.sleep, hold)
            task.get()
    info = multicore.pool_info()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "running": info["running"],
            "supervisor_pid": info.get("supervisor_pid"),
            "workers": [w["pid"] for w in info["workers"] if w["pid"]],
            "tasks_done": sum(w.get("tasks_done", 0) for w in info["workers"]),
        }
    )
