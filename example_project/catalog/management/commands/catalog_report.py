"""``manage.py catalog_report``: quality statistics per category, on every core with multicore.Task."""

import time

from django.core.management.base import BaseCommand

from catalog.report import build_report


class Command(BaseCommand):
    help = "Prints per-category quality statistics, computed in parallel and then sequentially."

    def handle(self, *args, **options):
        began = time.perf_counter()
        rows, parallel, pids = build_report(parallel=True)
        parallel_seconds = time.perf_counter() - began
        began = time.perf_counter()
        sequential_rows, _, _ = build_report(parallel=False)
        sequential_seconds = time.perf_counter() - began
        assert rows == sequential_rows, "parallel and sequential reports differ"
        self.stdout.write(f"{'category':<12}{'products':>10}{'mean':>8}{'best':>6}")
        for row in rows:
            self.stdout.write(f"{row['category']:<12}{row['products']:>10}{row['mean']:>8}{row['best']:>6}")
        mode = f"on the pool (worker pids {pids})" if parallel else "sequentially (Task() returned None)"
        self.stdout.write(f"computed {mode} in {parallel_seconds:.3f}s; sequentially in {sequential_seconds:.3f}s")
