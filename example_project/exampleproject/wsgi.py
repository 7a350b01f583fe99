"""WSGI entry point: the Django application wrapped by multicore's middleware.

``MulticoreMiddleware`` starts this process's pool before the first request, so no request
pays for forking the workers (under gunicorn the hooks in ``gunicorn.conf.py`` do it once per
gunicorn worker, after the app is loaded).
"""

import os

from django.core.wsgi import get_wsgi_application

from multicore.wsgi import MulticoreMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = MulticoreMiddleware(get_wsgi_application())
