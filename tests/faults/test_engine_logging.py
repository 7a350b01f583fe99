"""The engine's log records reach Python's ``logging`` under the ``multicore`` logger hierarchy.

The supervisor, written in Rust, logs a worker's death. A handler the application attaches to
the ``"multicore"`` logger (as a Django ``LOGGING`` entry would) must receive that record, under
``multicore.engine.supervisor``, with the exit status spelled as ``WorkerLostError`` spells it.
"""

from __future__ import annotations

import pytest

from tests.support import run_module


@pytest.mark.timeout(60)
def test_a_worker_death_logged_by_the_engine_reaches_the_multicore_logger(tmp_path):
    log_file = tmp_path / "multicore.log"
    proc = run_module(
        "tests.faults.scenarios.engine_logging", "worker_death_reaches_the_multicore_logger", str(log_file)
    )
    victim, described = proc.stdout.splitlines()[0].split(maxsplit=2)[1:]
    lines = log_file.read_text().splitlines()
    expected = f"multicore.engine.supervisor|WARNING|worker pid {victim} died ({described}); replacing it"
    assert expected in lines, (expected, lines, proc.stderr)
    assert described == "SIGKILL (-9)"
