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


async def async_pool_view(request):
    """An async view: fans out with arun() and awaits the results, never blocking the loop."""
    seconds = float(request.GET.get("sleep", "0"))
    marker = request.GET.get("marker")
    async with multicore.Task(timeout=30) as task:
        for i in range(4):
            await task.arun(sleep_then, seconds, i)
        if marker:
            await task.arun(touch, marker)
        results = await task.aget()
    return JsonResponse({"pid": os.getpid(), "results": results[:4]})


def sleep_then(seconds, value):
    import time

    time.sleep(seconds)
    return value


def touch(path):
    with open(path, "w") as f:
        f.write("ran")
