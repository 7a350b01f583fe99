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
    scenario("pool_options_out_of_the_engines_range_are_configuration_errors")


@pytest.mark.timeout(60)
def test_the_binding_refuses_a_malformed_payload_with_multicore_errors():
    scenario("the_binding_refuses_a_malformed_payload_with_multicore_errors")


@pytest.mark.timeout(60)
def test_a_failed_system_call_is_a_multicore_os_error_with_its_errno():
    scenario("a_failed_system_call_is_a_multicore_os_error_with_its_errno")


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
