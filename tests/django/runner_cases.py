"""Run by test_testing.py under Django's own test runner (not collected by pytest)."""

from django.db import connection
from django.test import TransactionTestCase

import multicore
from tests.testapp import tasks
from tests.testapp.models import Item


class WorkersSeeTheTestDatabase(TransactionTestCase):
    def test_workers_read_committed_rows_from_the_test_database(self):
        Item.objects.bulk_create(Item(name=str(i)) for i in range(25))
        task = multicore.Task()
        task.run(tasks.count_items)
        task.run(tasks.database_name)
        self.assertEqual(task.get(timeout=30), [25, str(connection.settings_dict["NAME"])])
        self.assertEqual(connection.settings_dict["NAME"], connection.settings_dict["TEST"]["NAME"])
