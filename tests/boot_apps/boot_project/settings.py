"""A Django project that declares its services from `LIFECYCLE["SERVICES"]` (for tests/test_gunicorn.py).

`LIFECYCLE` is the JSON in the environment variable `BOOT_LIFECYCLE`.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "boot-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["lifecycle.contrib.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "boot_project.urls"
WSGI_APPLICATION = "boot_project.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

LIFECYCLE = json.loads(os.environ.get("BOOT_LIFECYCLE", "{}"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"lifecycle": {"handlers": ["console"], "level": "INFO"}},
}
