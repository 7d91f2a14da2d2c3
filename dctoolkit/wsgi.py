"""WSGI entry point for gunicorn: `gunicorn dctoolkit.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
application = get_wsgi_application()
