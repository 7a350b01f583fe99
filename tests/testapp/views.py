import os

from django.http import JsonResponse

import multicore


def pool_view(request):
    """Runs one call on the pool and reports which processes took part."""
    task = multicore.Task()
    task.run(os.getpid)
    worker = task.get(timeout=30)[0]
    info = multicore.pool_info()
    return JsonResponse({"pid": os.getpid(), "supervisor_pid": info["supervisor_pid"], "worker_pid": worker})
