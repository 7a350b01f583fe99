"""Django REST Framework list patch: serialize a list endpoint's rows on every core.

``MULTICORE = {"drf-list-patch": True}`` makes the multicore app call :func:`patch` in
``ready()``; it replaces ``rest_framework.mixins.ListModelMixin.list`` (once, keeping the
original) with :func:`parallel_list`, which keeps DRF's control flow and spreads fetching and
serializing the rows over the pool (docs/drf.md). The modules, one job each:

* :mod:`~multicore.drf.patch`: installing the patched ``list()`` and running it across the pool;
* :mod:`~multicore.drf.policy`: when it steps aside, and :data:`stats`;
* :mod:`~multicore.drf.context`: the view and request a worker rebuilds;
* :mod:`~multicore.drf.rows`: how the rows reach the workers;
* :mod:`~multicore.drf.splice`: workers' JSON spliced into the parent's response.
"""

from __future__ import annotations

import sys
from typing import Any

from multicore.drf.patch import is_patched, parallel_list, patch, unpatch
from multicore.drf.policy import stats
from multicore.drf.splice import SplicedRows

__all__ = ["patch", "unpatch", "is_patched", "parallel_list", "stats", "SplicedRows"]


def __getattr__(name: str) -> Any:
    if name == "original_list":  # rebound by patch()/unpatch(): read it where it lives
        # (sys.modules: the package attribute "patch" is the function, not the module)
        return sys.modules["multicore.drf.patch"].original_list
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
