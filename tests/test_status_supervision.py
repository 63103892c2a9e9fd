"""Status tables and endpoints show restarts in the window and phi, where the manager uses them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flask")
from flask import Flask

from lifecycle import ExtensionService
from lifecycle.contrib._status import render_table
from lifecycle.contrib.flask import Lifecycle


@pytest.fixture
def make_app() -> Iterator[Any]:
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask(f"status{len(apps)}")
        app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_HEARTBEAT_INTERVAL_SECS=1,
                          LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=5, **config)
        Lifecycle(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["lifecycle"].shutdown()


def test_restarts_and_phi_appear_in_the_endpoints_and_the_table(frozen_lifecycle, make_app):
    app = make_app(LIFECYCLE_MAX_RESTARTS=3, LIFECYCLE_RESTART_WINDOW_SECS=60, LIFECYCLE_DETECTOR="phi")
    manager = app.extensions["lifecycle"]
    sid = manager.start_service(ExtensionService("svc", "1"))
    manager.handle_error(sid, "down")  # one restart
    manager.handle_heartbeat(sid)
    frozen_lifecycle.freezer.tick(4.5)  # silent long enough for phi to rise (Akka: 3 s acceptable pause)
    client = app.test_client()
    rows = client.get("/lifecycle/services").get_json()
    assert rows[0]["restarts"] == 1 == manager.restarts(sid)
    assert rows[0]["phi"] == round(manager.phi(sid), 2) and rows[0]["phi"] > 0
    assert client.get(f"/lifecycle/services/{sid}").get_json()["restarts"] == 1
    status = client.get("/lifecycle/status").get_json()
    assert status["services"][0]["restarts"] == 1 and "phi" in status["services"][0]
    header, row = render_table(rows).splitlines()
    assert header.split()[-2:] == ["RESTARTS", "PHI"]
    assert row.split()[-2:] == ["1", f"{rows[0]['phi']:.1f}"]


def test_without_them_the_rows_and_the_table_are_as_before(make_app):
    app = make_app()
    manager = app.extensions["lifecycle"]
    manager.start_service(ExtensionService("svc", "1"))
    rows = app.test_client().get("/lifecycle/services").get_json()
    assert "restarts" not in rows[0] and "phi" not in rows[0]
    assert "RESTARTS" not in render_table(rows) and "PHI" not in render_table(rows)
