"""The lifecycle endpoints under /lifecycle/."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("lifecycle/", include("lifecycle.contrib.django.urls"))]
