"""Models the batch tests process (no migrations: the test runner syncs them)."""

import uuid

from django.db import models


class Row(models.Model):
    value = models.IntegerField()
    group = models.IntegerField(default=0)
    # How many times a batch function processed the row: exactly-once tests read it.
    counter = models.IntegerField(default=0)
    result = models.BigIntegerField(null=True)


class UUIDRow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    counter = models.IntegerField(default=0)


if hasattr(models, "CompositePrimaryKey"):  # Django 5.2+

    class CompositeRow(models.Model):
        pk = models.CompositePrimaryKey("a", "b")
        a = models.IntegerField()
        b = models.IntegerField()
