from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tests.drf import app

router = DefaultRouter()
for prefix, view in [
    ("items", app.Items),
    ("unordered", app.UnorderedItems),
    ("paged", app.PagedItems),
    ("limited", app.LimitedItems),
    ("cursor", app.CursorItems),
    ("filtered", app.FilteredItems),
    ("mine", app.MyItems),
    ("wide", app.WideItems),
    ("unicode", app.UnicodeItems),
    ("uuids", app.UUIDItems),
    ("opted-out", app.OptedOutItems),
    ("exploding", app.ExplodingItems),
    ("locked", app.LockedUserItems),
]:
    router.register(prefix, view, basename="item" if prefix == "items" else prefix)

urlpatterns = [path("api/", include(router.urls))]
