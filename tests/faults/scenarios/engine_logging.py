"""The engine's log records reach Python's logging (tests/faults/test_engine_logging.py)."""

import logging
import os
import signal

import multicore
from multicore.exceptions import WorkerLostError
from tests.faults._util import wait_for


def pids():
    return [w["pid"] for w in multicore.pool_info()["workers"]]


def worker_death_reaches_the_multicore_logger(log_file: str) -> None:
    # Attached before the pool starts, so the forked supervisor inherits it, as with Django's LOGGING.
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(name)s|%(levelname)s|%(message)s"))
    logger = logging.getLogger("multicore")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    multicore.initialize(workers=2)
    assert wait_for(lambda: all(pids()), 10) is not None, multicore.pool_info()
    victim = pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in pids() and all(pids()), 10) is not None, multicore.pool_info()
    multicore.shutdown()
    handler.close()
    print("victim", victim, WorkerLostError.describe(-signal.SIGKILL))


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
