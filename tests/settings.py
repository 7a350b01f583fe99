"""Settings for the test suite. The database comes from MULTICORE_TEST_DB (docs/testing.md):

- ``sqlite`` (default): a file, since workers are other processes;
- ``postgres``: the server at MULTICORE_TEST_PG_URL (default postgres://root@127.0.0.1:5432/root).

Test database names carry the pid, so concurrent runs on one machine do not collide.
"""

import os
import tempfile
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

TEST_DB = os.environ.get("MULTICORE_TEST_DB", "sqlite")
_TMP = tempfile.gettempdir()

if TEST_DB == "sqlite":
    _default = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_TMP, "multicore-tests.sqlite3"),
        "TEST": {"NAME": os.path.join(_TMP, f"multicore-test-{os.getpid()}.sqlite3")},
    }
elif TEST_DB == "postgres":
    _url = urlparse(os.environ.get("MULTICORE_TEST_PG_URL", "postgres://root@127.0.0.1:5432/root"))
    _default = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/") or "postgres",
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        "OPTIONS": {"connect_timeout": 5},
        "TEST": {"NAME": f"test_multicore_{os.getpid()}"},
    }
else:
    raise ImproperlyConfigured(f"MULTICORE_TEST_DB must be 'sqlite' or 'postgres', got {TEST_DB!r}")

# Persistent connections with health checks: what multicore's workers are designed around.
DATABASES = {"default": {**_default, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}}

SECRET_KEY = "multicore-tests-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.testapp.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "multicore",
    "multicore.batch",
    "tests.testapp",
    "tests.batch",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

MULTICORE = {"workers": 2}
