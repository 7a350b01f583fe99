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


class Shelf(models.Model):
    name = models.CharField(max_length=50)


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Book(models.Model):
    """Related rows for the DRF refetch tests: a nullable foreign key, a many-to-many, ties."""

    title = models.CharField(max_length=50)
    rank = models.IntegerField(default=0)  # not unique: orderings on it have ties
    shelf = models.ForeignKey(Shelf, null=True, on_delete=models.SET_NULL, related_name="books")
    tags = models.ManyToManyField(Tag, related_name="books")


class Placement(models.Model):
    """A composite primary key: no single column to refetch rows by."""

    pk = models.CompositePrimaryKey("shelf_code", "slot")
    shelf_code = models.CharField(max_length=10)
    slot = models.IntegerField()
    label = models.CharField(max_length=50)
