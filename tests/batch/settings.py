"""Settings for ``manage.py runbatch`` subprocesses of the batch tests: the test suite's, pointed
at the database the test run created (BATCH_TEST_DB_NAME)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["BATCH_TEST_DB_NAME"]}}
DATABASES["default"].pop("TEST", None)
