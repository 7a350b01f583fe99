import time

from multicore import Task, initialize, shutdown
from multicore.utils import ranges

items = range(100)


def as_string(item):
    return str(item)


def expensive_as_string(item):
    time.sleep(0.01)
    return str(item)


def multi_expensive_as_string(start, end):
    return ",".join([expensive_as_string(item) for item in items[start:end]])


if __name__ == "__main__":
    initialize()
    task = Task()
    for i in range(20):
        task.run(as_string, i)
    print(", ".join(task.get()))

    task = Task()
    for start, end in ranges(items):
        task.run(multi_expensive_as_string, start, end)
    print(", ".join(task.get()))
    shutdown()
