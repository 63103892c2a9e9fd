"""WSGI entry point: `gunicorn --chdir examples/django_project project.wsgi` (runserver loads it too)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_wsgi_application()

# Servers load this module; manage.py commands do not. Services started here exist only where
# requests are served (and, under gunicorn --preload, the master holds its timers: only the
# workers watch).
from extensions.services import start_services  # noqa: E402  (needs the apps loaded above)

start_services()
