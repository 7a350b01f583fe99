"""Serializers and views the DRF patch tests serve (models from tests.testapp)."""

import hashlib
import threading

from django.contrib.auth.models import User
from rest_framework import authentication, permissions, serializers, viewsets
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination
from rest_framework.renderers import JSONRenderer

from tests.testapp.models import Item, UUIDItem


class ItemSerializer(serializers.HyperlinkedModelSerializer):
    digest = serializers.SerializerMethodField()
    seen_by = serializers.SerializerMethodField()
    tag = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = ["url", "id", "name", "group", "digest", "seen_by", "tag"]

    def get_digest(self, item):
        return hashlib.sha256(item.name.encode()).hexdigest()[:12]

    def get_seen_by(self, item):
        user = self.context["request"].user
        return user.username if user.is_authenticated else "anonymous"

    def get_tag(self, item):
        request = self.context["request"]
        return f"{request.query_params.get('tag', '')}@{request.build_absolute_uri('/')}"


class UUIDItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = UUIDItem
        fields = ["id", "name"]


class ExplodingSerializer(ItemSerializer):
    def get_digest(self, item):
        if item.name.endswith("-13"):
            raise ValueError(f"cannot digest {item.name}")
        return super().get_digest(item)


class SmallPages(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"


class GroupCursor(CursorPagination):
    ordering = ("group", "id")
    page_size = 20


class LockedUserAuthentication(authentication.BaseAuthentication):
    """Authenticates ``X-Locked: <username>`` as a user object that cannot be pickled."""

    def authenticate(self, request):
        name = request.META.get("HTTP_X_LOCKED")
        if not name:
            return None
        user = User.objects.get(username=name)
        user.lock = threading.Lock()
        return user, None


class WideJSONRenderer(JSONRenderer):
    compact = False


class UnicodeJSONRenderer(JSONRenderer):
    ensure_ascii = False


class Items(viewsets.ReadOnlyModelViewSet):
    queryset = Item.objects.order_by("pk")
    serializer_class = ItemSerializer
    pagination_class = None


class UnorderedItems(Items):
    queryset = Item.objects.all()


class PagedItems(Items):
    pagination_class = SmallPages


class LimitedItems(Items):
    pagination_class = LimitOffsetPagination


class CursorItems(Items):
    pagination_class = GroupCursor


class FilteredItems(Items):
    pagination_class = LimitOffsetPagination
    filter_backends = [SearchFilter, OrderingFilter]
    search_fields = ["name"]
    ordering_fields = ["group", "name", "id"]


class MyItems(Items):
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return Item.objects.filter(name__startswith=f"{self.request.user.username}-").order_by("-group", "pk")


class WideItems(Items):
    renderer_classes = [WideJSONRenderer]


class UnicodeItems(Items):
    renderer_classes = [UnicodeJSONRenderer]


class UUIDItems(viewsets.ReadOnlyModelViewSet):
    queryset = UUIDItem.objects.order_by("name")
    serializer_class = UUIDItemSerializer
    pagination_class = None


class OptedOutItems(Items):
    multicore_list = False


class ExplodingItems(Items):
    serializer_class = ExplodingSerializer


class LockedUserItems(Items):
    authentication_classes = [LockedUserAuthentication]
