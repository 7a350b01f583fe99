"""Choosing the dask backend: MULTICORE keys, their system checks, DASK_SCHEDULER_ADDRESS."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import multicore
from multicore import checks
from multicore import settings as multicore_settings
from multicore.backends.dask import DaskTask
from multicore.exceptions import ConfigurationError
from tests.dask import helpers


def _ids(user):
    with override_settings(MULTICORE=user):
        return [m.id for m in checks.check_settings()]


@pytest.fixture
def clean():
    multicore.shutdown()
    yield
    multicore.shutdown()


def test_the_settings_choose_the_backend_and_the_scheduler(dask_cluster, clean):
    with override_settings(MULTICORE={"backend": "dask", "dask-address": dask_cluster.address}):
        task = multicore.Task()
        assert isinstance(task, DaskTask)
        task.run(helpers.add, 1, 2)
        assert task.get(timeout=60) == [3]
        assert multicore.pool_info()["scheduler"] == dask_cluster.address
        assert isinstance(multicore.Task(backend="local"), multicore.Task)
    multicore.shutdown()
    assert isinstance(multicore.Task(), multicore.Task)  # back to the default: local


def test_dask_scheduler_address_is_the_fallback(dask_cluster, clean, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.address)
    with override_settings(MULTICORE={"backend": "dask"}):
        assert _ids({"backend": "dask"}) == []
        task = multicore.Task()
        task.run(helpers.add, 2, 2)
        assert task.get(timeout=60) == [4]
        assert multicore.pool_info()["scheduler"] == dask_cluster.address


def test_no_address_at_all_is_a_configuration_error(clean, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with (
        override_settings(MULTICORE={"backend": "dask"}),
        pytest.raises(ConfigurationError, match="DASK_SCHEDULER_ADDRESS"),
    ):
        multicore.Task()
    assert _ids({"backend": "dask"}) == ["multicore.W030"]


def test_initialize_takes_the_backend_and_the_address(dask_cluster, clean):
    multicore.initialize(backend="dask", dask_address=dask_cluster.address)
    assert isinstance(multicore.Task(), DaskTask)
    with pytest.raises(ValueError, match="backend must be one of 'local', 'dask'"):
        multicore.initialize(backend="celery")
    with pytest.raises(ValueError, match="dask_address is not a Dask scheduler address"):
        multicore.initialize(backend="dask", dask_address="scheduler")


@pytest.mark.parametrize(
    "user, expected",
    [
        ({"backend": "ray"}, "multicore.E005"),
        ({"backend": None}, "multicore.E003"),
        ({"backend": "local", "dask-address": "scheduler"}, "multicore.E030"),
        ({"dask-address": 8786}, "multicore.E003"),
        ({"dask-address": "http://scheduler:8786"}, "multicore.E030"),
        ({"dask_address": "tcp://scheduler:8786"}, "multicore.E002"),
    ],
)
def test_bad_values_fail_the_checks(user, expected):
    assert _ids(user) == [expected]
    with override_settings(MULTICORE=user), pytest.raises(ImproperlyConfigured, match=expected):
        multicore_settings.get_config()


@pytest.mark.parametrize("address", ["tcp://scheduler:8786", "tls://10.0.0.5:8786", "scheduler:8786", "inproc://x"])
def test_good_addresses_pass(address):
    assert _ids({"backend": "dask", "dask-address": address}) == []
