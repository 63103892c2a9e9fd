"""Django configured once per test process for every test module that needs it, and its URLconf.

Imported (not collected) by the Django test modules; whichever imports it first configures
Django, so all of them see the same settings and the same URLs.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.urls import include, path

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="lifecycle-tests",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        INSTALLED_APPS=["lifecycle.contrib.django"],
        ROOT_URLCONF=__name__,
        # CSRF middleware on, to prove the views are exempt; CommonMiddleware for APPEND_SLASH.
        MIDDLEWARE=["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"],
        DATABASES={},
        USE_TZ=True,
    )
django.setup()

urlpatterns = [path("lifecycle/", include("lifecycle.contrib.django.urls"))]
