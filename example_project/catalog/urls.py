from django.urls import include, path
from rest_framework.routers import DefaultRouter

from catalog import views

router = DefaultRouter()
router.register("products", views.ProductViewSet, basename="product")
router.register("products-light", views.LightProductViewSet, basename="product-light")
router.register("product-pages", views.ProductPageViewSet, basename="product-page")
router.register("product-cursor", views.ProductCursorViewSet, basename="product-cursor")
router.register("product-list", views.ProductFullListViewSet, basename="product-list")
router.register("product-sequential", views.SequentialProductViewSet, basename="product-sequential")
router.register("my-products", views.MyProductViewSet, basename="my-product")
router.register("categories", views.CategoryViewSet, basename="category")

urlpatterns = [
    path("api/", include(router.urls)),
    path("keywords/", views.keyword_cloud, name="keyword-cloud"),
    path("report/", views.category_report, name="category-report"),
    path("async-report/", views.async_report, name="async-report"),
    path("pool/", views.pool, name="pool"),
]
