from django.urls import path

from tests.testapp import views

urlpatterns = [path("pool/", views.pool_view), path("async-pool/", views.async_pool_view)]
