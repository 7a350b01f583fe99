"""When the list patch steps aside, and the record of what it did.

Each patched ``list()`` ends as ``"parallel"`` or as ``"fallback:<reason>"``, counted in
:data:`stats`. The reasons decided before any work is shipped live here: the view opted out,
the list is too short to pay for the round trip, a connection is inside ``atomic()`` (workers
would not see its uncommitted writes), or no CPU is idle (splitting would only add the cost of
shipping the work).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from django.db import connections
from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination

from multicore._pool import lifecycle
from multicore.settings import get_config

logger = logging.getLogger("multicore.drf")

#: What the patched list did, by outcome: "parallel", "fallback:<reason>".
stats: Counter[str] = Counter()
_stats_lock = threading.Lock()


def count(outcome: str, view: Any = None, detail: str = "") -> None:
    with _stats_lock:
        stats[outcome] += 1
    if view is not None and logger.isEnabledFor(logging.DEBUG):
        how = "served in parallel" if outcome == "parallel" else f"served sequentially ({outcome[9:]})"
        logger.debug("multicore.drf: %s %s%s", type(view).__name__, how, detail)


def min_items() -> int:
    return get_config()["drf-min-items"]


def refusal(view: Any, request: Any) -> str | None:
    """Why this list should not be spread, known before any query: or None.

    A page whose size (``?limit=``, ``page_size``) is below ``"drf-min-items"`` is refused here;
    a list that only turns out short once fetched is refused by the caller.
    """
    if any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
        return "atomic"
    size = page_size(view, request)
    if size is not None and size < min_items():
        return "small"
    return None


def page_size(view: Any, request: Any) -> int | None:
    """The most rows the view's paginator will put on this page, if it says (DRF's own do)."""
    paginator = view.paginator
    if paginator is None:
        return None
    try:
        if isinstance(paginator, LimitOffsetPagination):
            return paginator.get_limit(request)
        if isinstance(paginator, (PageNumberPagination, CursorPagination)):
            return paginator.get_page_size(request)
    except Exception:  # noqa: BLE001 - DRF will report a bad parameter itself
        return None
    return None


#: When the busy-CPU guard reads the run queue, in seconds after its first reading; it says
#: "busy" only if every reading does. An idle machine pays nothing (the first reading decides);
#: a busy one waits the last delay before DRF serializes, with no CPU used meanwhile, which the
#: other requests' threads may not be ready to fill. A 1.5 ms window was tried: it halved the
#: false "busy" readings of an idle machine, gained nothing measurable for one client, and may
#: cost four clients throughput (docs/drf.md).
CONFIRM_AT = (0.0, 0.0003, 0.0006)


def cores_free(view: Any) -> bool:
    """Whether enough CPUs are idle right now for the workers to add anything.

    Read from the kernel's instantaneous count of runnable threads (``/proc/loadavg``), which
    includes this one: when other requests or programs already keep the cores busy, splitting
    the work only adds the cost of shipping it, so DRF serializes here. A process that is
    runnable only for a moment (the database server finishing a query, another server's
    worker cleaning up after its response) must not count, so a busy reading must be
    confirmed at each of :data:`CONFIRM_AT`.
    """
    wanted = getattr(view, "multicore_min_idle_cpus", None)
    if wanted is None:
        wanted = get_config()["drf-min-idle-cpus"]
    if wanted <= 0:
        return True
    cpus = lifecycle.recent_usable_cpus()
    began = time.perf_counter()
    for at in CONFIRM_AT:
        if at:
            time.sleep(max(0.0, began + at - time.perf_counter()))
        try:
            with open("/proc/loadavg", "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return True  # no such file (not Linux): the Task() load guard still applies
        if cpus - running >= wanted:
            return True
    return False
