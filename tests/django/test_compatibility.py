"""The original django-multicore's Django names (docs/compatibility.md): its app class, its
request wrapper and ranges() over a QuerySet."""

from __future__ import annotations

import pickle

import pytest
from django.apps import apps
from django.test import RequestFactory

from multicore.utils import PicklableWSGIRequest, ranges
from tests.support import run_python
from tests.testapp.models import Item


def test_the_originals_app_path_in_installed_apps():
    proc = run_python(
        """
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=["multicore.app.MulticoreAppConfig"])
        django.setup()
        from django.apps import apps
        config = apps.get_app_config("multicore")
        print(type(config).__name__, config.name)
        """,
        timeout=30,
    )
    assert proc.stdout.split() == ["MulticoreAppConfig", "multicore"]
    assert apps.get_app_config("multicore").name == "multicore"


def test_picklable_wsgi_request_wraps_a_request():
    request = RequestFactory().get("/items/?page=2")
    copy = pickle.loads(pickle.dumps(PicklableWSGIRequest(request)))
    assert (copy.path, copy.GET["page"], copy.get_host()) == ("/items/", "2", "testserver")


@pytest.mark.django_db(transaction=True)  # committed rows, as workers would read them
def test_ranges_counts_a_queryset():
    Item.objects.bulk_create(Item(name=str(i)) for i in range(10))
    assert list(ranges(Item.objects.all(), number_of_workers=2)) == [(0, 5), (5, 10)]
