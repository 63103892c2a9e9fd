"""WSGI entry point: `gunicorn --chdir examples/django_project project.wsgi` (runserver loads it too).

Django's own: the example's service is declared in settings (`LIFECYCLE["SERVICES"]`), and each
process that serves (a gunicorn worker, runserver) declares it as it starts serving, with no
request needed; `manage.py` commands never do. Under gunicorn --preload the master, which
serves nothing, declares nothing: its forked workers do.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_wsgi_application()
