"""A report computed with ``multicore.Task``: quality statistics per category, from a sync view
(``build_report``, ``run()``/``get()``) and from an async one (``abuild_report``, ``arun()``/``aget()``)."""

import os
import time
from statistics import mean

from asgiref.sync import sync_to_async

import multicore
from catalog import analysis
from catalog.models import Category, Product
from multicore.utils import ranges


def score_range(start: int, end: int) -> tuple[list[tuple[int, int]], int]:
    """(category id, quality score) for products ``start..end`` by primary key."""
    rows = Product.objects.order_by("pk").values_list("category_id", "description")[start:end]
    return [(category_id, analysis.quality_score(text, rounds=64)) for category_id, text in rows], os.getpid()


def summarize(parts: list[tuple[list[tuple[int, int]], int]], names: dict[int, str]) -> list[dict]:
    """Rows of {category, products, mean, best} from ``score_range``'s parts, by category name."""
    scores: dict[int, list[int]] = {}
    for pairs, _pid in parts:
        for category_id, score in pairs:
            scores.setdefault(category_id, []).append(score)
    return [
        {"category": names[cid], "products": len(s), "mean": round(mean(s), 1), "best": max(s)}
        for cid, s in sorted(scores.items(), key=lambda kv: names[kv[0]])
    ]


def build_report(parallel: bool = True) -> tuple[list[dict], bool, list[int]]:
    """The report's rows; whether it ran on the pool; which pids did it."""
    task = multicore.Task() if parallel else None
    if task is not None:
        for start, end in ranges(Product.objects.all()):
            task.run(score_range, start, end)
        parts = task.get()
    else:
        parts = [score_range(0, Product.objects.count())]
    names = dict(Category.objects.values_list("id", "name"))
    return summarize(parts, names), task is not None, sorted({pid for _, pid in parts})


async def abuild_report(parallel: bool = True, hold: float = 0) -> tuple[list[dict], bool, list[int]]:
    """``build_report`` for an async view: the event loop serves other requests while the pool
    scores. Not parallel (or no Task under load), the same work runs in Django's sync thread, as
    an async view without multicore would run it.

    ``hold`` seconds first keep one more pool worker busy in the same Task (``time.sleep``): the
    server tests disconnect such a request and watch that worker being stopped.
    """
    count = await Product.objects.acount()
    task = multicore.Task() if parallel else None
    if task is not None:
        # Leaving the block by an exception or a cancel (a client disconnect) stops the calls.
        async with task:
            if hold > 0:
                await task.arun(time.sleep, hold)
            for start, end in ranges(range(count)):
                await task.arun(score_range, start, end)
            parts = await task.aget()
        parts = [part for part in parts if part is not None]  # time.sleep's None
    else:
        parts = [await sync_to_async(score_range)(0, count)]
    names = {cid: name async for cid, name in Category.objects.values_list("id", "name")}
    return summarize(parts, names), task is not None, sorted({pid for _, pid in parts})
