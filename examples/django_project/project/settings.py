"""Settings for the lifecycle example: no database, the lifecycle app, and `LIFECYCLE` partly from env vars."""

from __future__ import annotations

import os

from extensions.services import SERVICES

# Example values only: set DJANGO_SECRET_KEY and LIFECYCLE_HEARTBEAT_TOKEN for anything beyond a demo.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "extensions",  # before lifecycle: its ready() connects the example's event log before the manager is built
    "lifecycle.contrib.django",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

LIFECYCLE: dict[str, object] = {
    "HEARTBEAT_INTERVAL_SECS": float(os.environ.get("LIFECYCLE_HEARTBEAT_INTERVAL_SECS", "30")),
    "HEARTBEAT_TIMEOUT_SECS": float(os.environ.get("LIFECYCLE_HEARTBEAT_TIMEOUT_SECS", "90")),
    # Unset means no token: fine on localhost, and `manage.py check` warns (lifecycle.W001).
    "HEARTBEAT_TOKEN": os.environ.get("LIFECYCLE_HEARTBEAT_TOKEN") or None,
    # Declared services: desired state that every serving process asserts, never fatal at boot.
    "SERVICES": SERVICES,
}
# Fleet mode: every worker (and host) shares one registry on Redis, so any worker may take the
# heartbeat and exactly one acts on a missed deadline. E.g. LIFECYCLE_REDIS_URL=redis://127.0.0.1:6379/0.
if os.environ.get("LIFECYCLE_REDIS_URL"):
    LIFECYCLE["REDIS_URL"] = os.environ["LIFECYCLE_REDIS_URL"]
    LIFECYCLE["NAMESPACE"] = os.environ.get("LIFECYCLE_NAMESPACE", "lifecycle")

# The library logs to the "lifecycle" logger and the example logs every event to "example"; show their
# INFO lines (starts, stops, timeouts) on the console, with the process id: under gunicorn every worker
# runs its own manager.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "lifecycle": {"handlers": ["console"], "level": "INFO"},
        "example": {"handlers": ["console"], "level": "INFO"},
    },
}
