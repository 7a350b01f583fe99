from rest_framework import serializers

from catalog import analysis
from catalog.models import Category, Product


class CategorySerializer(serializers.HyperlinkedModelSerializer):
    product_count = serializers.SerializerMethodField()

    class Meta:
        model = Category
        fields = ["url", "name", "slug", "product_count"]

    def get_product_count(self, category: Category) -> int:
        return category.products.count()


class ProductSerializer(serializers.HyperlinkedModelSerializer):
    """A product with computed fields: the CPU work per row the DRF patch spreads over cores."""

    category = serializers.HyperlinkedRelatedField(view_name="category-detail", read_only=True)
    category_name = serializers.CharField(source="category.name", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    keywords = serializers.SerializerMethodField()
    quality = serializers.SerializerMethodField()
    yours = serializers.SerializerMethodField()
    viewed_with = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = [
            "url",
            "id",
            "name",
            "sku",
            "price",
            "stock",
            "category",
            "category_name",
            "owner",
            "created",
            "keywords",
            "quality",
            "yours",
            "viewed_with",
        ]

    def get_keywords(self, product: Product) -> list[str]:
        return analysis.keywords(product.description)

    def get_quality(self, product: Product) -> int:
        return analysis.quality_score(product.description)

    def get_yours(self, product: Product) -> bool:
        user = self.context["request"].user
        return user.is_authenticated and product.owner_id == user.pk

    def get_viewed_with(self, product: Product) -> str:
        # Echoes request data into every row: proves workers see the parent's request.
        request = self.context["request"]
        return f"{request.method} {request.query_params.get('tag', '-')} {request.get_host()}"


class LightProductSerializer(serializers.ModelSerializer):
    """Plain fields and no computed work: about 0.05 ms per row instead of 0.3 ms, to find where
    the patch starts to pay for a light serializer (docs/benchmarks.md)."""

    category_name = serializers.CharField(source="category.name", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    quality = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = ["id", "name", "sku", "price", "stock", "category_name", "owner", "created", "quality"]

    def get_quality(self, product: Product) -> int:
        return analysis.quality_score(product.description, rounds=60)
