"""ASGI entry point (granian ``--interface asgi``, uvicorn, daphne): the Django application
wrapped by multicore's ASGI middleware, which starts this process's pool before it serves."""

import os

from django.core.asgi import get_asgi_application

from multicore.asgi import MulticoreMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = MulticoreMiddleware(get_asgi_application())
