"""Batch jobs of the catalog (``manage.py runbatch`` finds them by name in this module).

``catalog-quality`` backfills ``Product.quality``, a score derived from the description with real
CPU work per product (about 0.2 ms of pure Python, see catalog.analysis.quality_score)::

    python manage.py runbatch catalog-quality --progress log
"""

import os

from catalog.analysis import quality_score
from catalog.models import Product
from multicore.batch import BatchJob, tick


class BackfillQuality(BatchJob):
    name = "catalog-quality"
    chunk_size = 200
    retries = 2
    # Recomputing a derived column is idempotent, so at-least-once is enough: the chunk's
    # writes and its done-mark need not share one transaction. On SQLite that lets chunks
    # compute in parallel (an atomic chunk holds SQLite's single write lock throughout).
    atomic = False

    def get_queryset(self):
        return Product.objects.filter(quality__isnull=True)

    def process(self, queryset):
        products = list(queryset.only("id", "description"))
        rounds = int(os.environ.get("CATALOG_QUALITY_ROUNDS", "400"))  # the demo makes it slower
        for product in products:
            product.quality = quality_score(product.description, rounds)
            tick()
        Product.objects.bulk_update(products, ["quality"])
        return len(products)
