"""Models the multicore tests read from workers (no migrations: the test runner syncs them)."""

import uuid

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
    group = models.IntegerField(default=0)  # deliberately not unique: ordering by it has ties


class UUIDItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=50)


class GroupOrderedItem(models.Model):
    group = models.IntegerField()

    class Meta:
        ordering = ["group"]
