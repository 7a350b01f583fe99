"""patch()/unpatch() and the app's switch."""

from __future__ import annotations

import pytest
from rest_framework import mixins

from multicore import drf
from tests.support import run_python

DRF_LIST = mixins.ListModelMixin.list


@pytest.fixture(autouse=True)
def restore():
    drf.unpatch()
    yield
    drf.unpatch()
    assert mixins.ListModelMixin.list is DRF_LIST


def test_patch_is_idempotent_and_keeps_the_original():
    assert not drf.is_patched()
    assert drf.patch() is True
    assert drf.patch() is False
    assert mixins.ListModelMixin.list is drf.parallel_list
    assert drf.original_list is DRF_LIST
    assert drf.parallel_list.__wrapped__ is DRF_LIST


def test_unpatch_restores_drf():
    drf.patch()
    assert drf.unpatch() is True
    assert drf.unpatch() is False
    assert mixins.ListModelMixin.list is DRF_LIST
    assert drf.original_list is None


@pytest.mark.parametrize("enabled", [True, False])
def test_app_ready_patches_when_the_setting_is_on(enabled):
    """The switch: ready() patches DRF with the setting on; off, multicore.drf is not even imported."""
    proc = run_python(
        f"""
        import sys
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "multicore"],
            MULTICORE={{"drf-list-patch": {enabled}}},
        )
        django.setup()
        from rest_framework import mixins
        print(getattr(mixins.ListModelMixin.list, "multicore_patched", False), "multicore.drf" in sys.modules)
        """,
        timeout=30,
    )
    assert proc.stdout.split() == [str(enabled), str(enabled)]
