"""URLconf for the endpoints: `path("lifecycle/", include("lifecycle.contrib.django.urls"))`.

Ids may hold any character, "/" included; the heartbeat pattern comes first so that
`services/<id>/heartbeat` is always the heartbeat endpoint. The include's root is the status
page (`status` is its JSON, `status.css`/`status.js` its files). The last pattern answers every
other path under the include with a JSON 404.
"""

from __future__ import annotations

from django.urls import re_path

from . import views

app_name = "lifecycle"

_ID = r"(?P<id>[\s\S]+)"  # [\s\S], unlike ".", matches a newline too

urlpatterns = [
    re_path(rf"^services/{_ID}/heartbeat$", views.heartbeat, name="heartbeat"),
    re_path(rf"^services/{_ID}$", views.get_service, name="get_service"),
    re_path(r"^services$", views.list_services, name="list_services"),
    re_path(r"^healthz$", views.healthz, name="healthz"),
    re_path(r"^status$", views.status, name="status"),
    re_path(r"^$", views.status_page, name="status_page"),
    re_path(r"^(?P<name>status\.(?:css|js))$", views.status_asset, name="status_asset"),
    re_path(r"^metrics$", views.metrics, name="metrics"),
    re_path(r"^[\s\S]*$", views.unknown, name="unknown"),
]
