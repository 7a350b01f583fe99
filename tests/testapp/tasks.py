"""Functions the tests send to workers (importable, so workers can rebuild the calls)."""

import os

from django.db import connection

from multicore.utils import keyset_filter
from tests.testapp.models import Item, UUIDItem


def count_items():
    return Item.objects.count()


def item_names(start, end):
    return list(Item.objects.order_by("pk").values_list("name", flat=True)[start:end])


def keyset_pks(lo, hi, model="Item"):
    qs = (Item if model == "Item" else UUIDItem).objects.all()
    return list(keyset_filter(qs, lo, hi).values_list("pk", flat=True))


def database_name():
    return str(connection.settings_dict["NAME"])


def backend_pid():
    """(worker pid, PostgreSQL backend pid of this worker's connection)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return os.getpid(), cursor.fetchone()[0]


def connection_id():
    """(worker pid, id of the driver connection object): stable while the connection is reused."""
    connection.ensure_connection()
    return os.getpid(), id(connection.connection)
