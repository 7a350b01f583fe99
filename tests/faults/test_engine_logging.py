"""The engine's log records reach Python's ``logging`` under the ``multicore`` logger hierarchy.

The supervisor, written in Rust, logs a worker's death. A handler the application attaches to
the ``"multicore"`` logger (as a Django ``LOGGING`` entry would) must receive that record, under
``multicore.engine.supervisor``, with the exit status spelled as ``WorkerLostError`` spells it.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_python


@pytest.mark.timeout(60)
def test_a_worker_death_logged_by_the_engine_reaches_the_multicore_logger(tmp_path):
    log_file = tmp_path / "multicore.log"
    proc = run_python(rf'''
import logging, os, signal
import multicore
from multicore.exceptions import WorkerLostError
from tests.faults._util import wait_for

# Attached before the pool starts, so the forked supervisor inherits it, as with Django's LOGGING.
handler = logging.FileHandler({str(log_file)!r})
handler.setFormatter(logging.Formatter("%(name)s|%(levelname)s|%(message)s"))
logger = logging.getLogger("multicore")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False

multicore.initialize(workers=2)
pids = lambda: [w["pid"] for w in multicore.pool_info()["workers"]]
assert wait_for(lambda: all(pids()), 10) is not None, multicore.pool_info()
victim = pids()[0]
os.kill(victim, signal.SIGKILL)
assert wait_for(lambda: victim not in pids() and all(pids()), 10) is not None, multicore.pool_info()
multicore.shutdown()
print("victim", victim, WorkerLostError.describe(-signal.SIGKILL))
''')
    victim, described = proc.stdout.split(maxsplit=2)[1:]
    described = described.strip()
    lines = log_file.read_text().splitlines()
    expected = f"multicore.engine.supervisor|WARNING|worker pid {victim} died ({described}); replacing it"
    assert expected in lines, (expected, lines, proc.stderr)
    assert described == "SIGKILL (-9)"
