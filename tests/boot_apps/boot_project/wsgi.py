"""WSGI entry point: `gunicorn --chdir tests/boot_apps boot_project.wsgi`; it starts nothing itself."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "boot_project.settings")

application = get_wsgi_application()
