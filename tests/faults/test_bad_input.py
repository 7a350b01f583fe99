"""Bad input gets a clear exception naming the problem, and the pool stays usable afterwards."""

from __future__ import annotations

import pytest

from tests.support import run_module

SCENARIOS = "tests.faults.scenarios.bad_input"


def scenario(name: str, *args: str, timeout: float = 60) -> None:
    proc = run_module(SCENARIOS, name, *args, timeout=timeout)
    assert "OK" in proc.stdout.splitlines(), proc.stdout + proc.stderr


@pytest.mark.timeout(60)
def test_unpicklable_function_and_arguments_fail_in_run():
    scenario("unpicklable_function_and_arguments_fail_in_run")


@pytest.mark.timeout(60)
def test_unpicklable_results_and_exceptions_fail_in_get():
    scenario("unpicklable_results_and_exceptions_fail_in_get")


@pytest.mark.timeout(60)
def test_result_not_fitting_the_serialization_format():
    scenario("result_not_fitting_the_serialization_format")


@pytest.mark.timeout(60)
def test_non_callable_and_unknown_options():
    scenario("non_callable_and_unknown_options")


@pytest.mark.timeout(60)
def test_pool_options_out_of_the_engines_range_are_configuration_errors():
    scenario(r'''
from multicore import _core
from multicore.exceptions import ConfigurationError
exc = expect(ConfigurationError, lambda: multicore.initialize(workers=2, inline_size=32), "inline_size", "64")
assert isinstance(exc, ValueError)             # still caught by `except ValueError`
# The engine's own check, behind the binding, raises the same class (never a bare ValueError).
options = dict(workers=2, slots=4, inline_size=64, worker_spin_us=0, parent_spin_us=0, max_payload=None)
expect(ConfigurationError, lambda: _core.Pool(**{**options, "slots": _core.MAX_SLOTS + 1}), "slots", "65536")
expect(ConfigurationError, lambda: _core.Pool(**{**options, "inline_size": _core.MIN_INLINE_SIZE - 1}), "inline_size")
expect(ConfigurationError, lambda: _core.Pool(**{**options, "workers": _core.MAX_WORKERS + 1}), "workers", "1024")
still_works("after refused options")
print("OK")
''')


@pytest.mark.timeout(60)
def test_the_binding_refuses_a_malformed_payload_with_multicore_errors():
    scenario(r'''
from multicore._pool import lifecycle
from multicore.exceptions import ProtocolError
core = lifecycle.ensure_pool().core
exc = expect(SerializationError, lambda: core.submit(0, 42), "not int")
assert isinstance(exc, TypeError)              # still caught by `except TypeError`
expect(SerializationError, lambda: core.submit(0, [b"ok", 42]), "not list")
expect(ProtocolError, lambda: core.submit(1 << 31, b""), "2**31")
assert multicore.pool_info()["slots_in_use"] == 0
still_works("after malformed payloads")
print("OK")
''')


@pytest.mark.timeout(60)
def test_a_failed_system_call_is_a_multicore_os_error_with_its_errno():
    scenario(r'''
import errno
from multicore import _core
from multicore.exceptions import MulticoreOSError
options = dict(workers=2, slots=4, inline_size=64, worker_spin_us=0, parent_spin_us=0, max_payload=None)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
open_fds = len(os.listdir("/proc/self/fd")) - 1      # minus the one listdir itself used
resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds, hard))   # no descriptor left
exc = expect(OSError, lambda: _core.Pool(**options), "failed", "Too many open files")
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
assert isinstance(exc, MulticoreOSError) and isinstance(exc, MulticoreError), type(exc).__mro__
assert exc.errno == errno.EMFILE, (exc.errno, str(exc))
print("OK")
''')


@pytest.mark.timeout(60)
def test_payload_over_the_pools_max_payload():
    """Stands in for a 2 GB payload where shared memory is smaller: the limit is 1 MB here."""
    scenario("payload_over_the_pools_max_payload")


@pytest.mark.timeout(60)
def test_real_shared_memory_allocation_failure():
    """A real failure to get shared memory (fallocate on the memfd fails under RLIMIT_FSIZE,
    the same way it fails on a full /dev/shm or memory cgroup): an error, never SIGBUS."""
    scenario("real_shared_memory_allocation_failure")


@pytest.mark.timeout(60)
def test_keyboard_interrupt_in_get_stops_the_calls_and_keeps_the_pool():
    scenario("keyboard_interrupt_in_get_stops_the_calls_and_keeps_the_pool")
