"""A report computed with ``multicore.Task``: quality statistics per category."""

import os
from statistics import mean

import multicore
from catalog import analysis
from catalog.models import Category, Product
from multicore.utils import ranges


def score_range(start: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """(category id, quality score) for products ``start..end`` by primary key."""
    rows = Product.objects.order_by("pk").values_list("category_id", "description")[start:end]
    return [(category_id, analysis.quality_score(text, rounds=64)) for category_id, text in rows], os.getpid()


def build_report(parallel: bool = True) -> tuple[list[dict], bool, list[int]]:
    """Rows of {category, products, mean, best}; whether it ran on the pool; which pids did it."""
    task = multicore.Task() if parallel else None
    if task is not None:
        for start, end in ranges(Product.objects.all()):
            task.run(score_range, start, end)
        parts = task.get()
    else:
        parts = [score_range(0, Product.objects.count())]
    scores: dict[int, list[int]] = {}
    for pairs, _pid in parts:
        for category_id, score in pairs:
            scores.setdefault(category_id, []).append(score)
    names = dict(Category.objects.values_list("id", "name"))
    rows = [
        {"category": names[cid], "products": len(s), "mean": round(mean(s), 1), "best": max(s)}
        for cid, s in sorted(scores.items(), key=lambda kv: names[kv[0]])
    ]
    return rows, task is not None, sorted({pid for _, pid in parts})
