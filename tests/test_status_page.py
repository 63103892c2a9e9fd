"""The status page's server side, without a browser: its files, its JSON, its access rules, its event log.

Flask's and Django's test clients against real apps in manual mode (`AUTOSTART=False`) under
frozen time; the browser tests are in test_status_page_browser.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("flask")
pytest.importorskip("django")

import django_setup  # noqa: F401  (configures Django)
from django.test import Client, override_settings
from flask import Flask

import lifecycle.contrib.django as integration
from lifecycle import ExtensionService, LifecycleManager
from lifecycle.contrib import _eventlog
from lifecycle.contrib._page import CONTENT_SECURITY_POLICY
from lifecycle.contrib.django import get_manager
from lifecycle.contrib.flask import Lifecycle

MANUAL = {"AUTOSTART": False, "HEARTBEAT_INTERVAL_SECS": 1, "HEARTBEAT_TIMEOUT_SECS": 3, "JITTER": 0.0,
          "MAX_RECONNECT_ATTEMPTS": 4}
TOKEN = "page-t0ken"


@pytest.fixture
def make_app(frozen_lifecycle: Any) -> Iterator[Callable[..., tuple[Flask, LifecycleManager]]]:
    """Flask apps with lifecycle in manual mode under frozen time; managers shut down after the test."""
    managers: list[LifecycleManager] = []

    def make(**settings: Any) -> tuple[Flask, LifecycleManager]:
        app = Flask(f"page{len(managers)}")
        app.config.update({f"LIFECYCLE_{key}": value for key, value in {**MANUAL, **settings}.items()})
        managers.append(Lifecycle(app).get_manager(app))
        return app, managers[-1]

    yield make
    for manager in managers:
        manager.shutdown()


def start(manager: LifecycleManager, name: str, id: str) -> str:
    return str(manager.start_service(ExtensionService(name, "1.0", id=id)))


# -- the page and its files ---------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_policy(make_app):
    app, _ = make_app()
    client = app.test_client()
    page = client.get("/lifecycle/")
    assert page.status_code == 200 and page.content_type == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "form-action 'none'" in CONTENT_SECURITY_POLICY and "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    assert '<script src="status.js" defer></script>' in html and 'href="status.css"' in html
    assert "<script>" not in html and "http" not in html  # no inline script, nothing from elsewhere
    assert client.get("/lifecycle/status.js").content_type == "text/javascript; charset=utf-8"
    assert client.get("/lifecycle/status.css").content_type == "text/css; charset=utf-8"
    assert "innerHTML" not in client.get("/lifecycle/status.js").get_data(as_text=True)


def test_the_prefix_without_its_slash_leads_to_the_page(make_app):
    app, _ = make_app()
    response = app.test_client().get("/lifecycle")
    assert response.status_code == 308 and response.headers["Location"].endswith("/lifecycle/")


def test_the_page_takes_only_get_and_head(make_app):
    app, _ = make_app()
    response = app.test_client().post("/lifecycle/")
    assert response.status_code == 405 and response.get_json()["allowed"] == ["GET", "HEAD", "OPTIONS"]


def test_with_a_token_the_page_is_open_and_its_data_is_not(make_app):
    app, manager = make_app(HEARTBEAT_TOKEN=TOKEN)
    start(manager, "alpha", "alpha-1")
    client = app.test_client()
    assert client.get("/lifecycle/").status_code == 200  # the same bytes for everyone, no data
    assert client.get("/lifecycle/status.js").status_code == 200
    assert client.get("/lifecycle/status").status_code == 401
    assert client.get("/lifecycle/status", headers={"Authorization": "Bearer nope"}).status_code == 403
    allowed = client.get("/lifecycle/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and [s["id"] for s in allowed.get_json()["services"]] == ["alpha-1"]


def test_with_a_hook_the_data_is_guarded_by_the_hook(make_app):
    app, _ = make_app(AUTH=lambda request: request.cookies.get("session") == "ok")
    client = app.test_client()
    assert client.get("/lifecycle/status").status_code == 403
    client.set_cookie("session", "ok")
    assert client.get("/lifecycle/status").status_code == 200


# -- the JSON ---------------------------------------------------------------------------------------------


def test_status_lists_services_with_attempts_counts_and_events_newest_first(make_app, frozen_lifecycle):
    app, manager = make_app()
    start(manager, "alpha", "alpha-1")
    start(manager, "beta", "beta-1")
    frozen_lifecycle.advance(2)
    manager.handle_heartbeat("alpha-1")
    manager.handle_error("beta-1", "disk full")
    frozen_lifecycle.advance(1.5)
    response = app.test_client().get("/lifecycle/status")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert {key: body[key] for key in ("scope", "leader", "closed", "max_attempts", "total")} == {
        "scope": "process", "leader": None, "closed": False, "max_attempts": 4, "total": 2,
    }
    assert isinstance(body["pid"], int)
    assert body["counts"] == {"starting": 0, "running": 1, "stopping": 0, "stopped": 0, "error": 0,
                              "reconnecting": 1}
    assert body["services"] == [
        {"id": "alpha-1", "name": "alpha", "version": "1.0", "status": "running",
         "seconds_since_heartbeat": 1.5, "attempt": 0},
        {"id": "beta-1", "name": "beta", "version": "1.0", "status": "reconnecting",
         "seconds_since_heartbeat": 3.5, "attempt": 1},
    ]
    assert [(e["event"], e["service_id"], e["summary"]) for e in body["events"]] == [
        ("reconnecting", "beta-1", "reconnect attempt 1 of 4 in 1 s"),
        ("status_changed", "beta-1", "error \u2192 reconnecting"),
        ("status_changed", "beta-1", "running \u2192 error"),
        ("service_error", "beta-1", "disk full"),
        ("status_changed", "beta-1", "starting \u2192 running"),
        ("service_started", "beta-1", ""),
        ("status_changed", "alpha-1", "starting \u2192 running"),
        ("service_started", "alpha-1", ""),
    ]
    assert [e["seconds_ago"] for e in body["events"]] == [1.5] * 4 + [3.5] * 4
    assert [e["seq"] for e in body["events"]] == list(range(8, 0, -1))
    assert body["events"][0]["name"] == "beta" and body["events"][1]["status"] == "reconnecting"
    assert body["events_seen"] == 8 and body["events_kept"] == _eventlog.DEFAULT_EVENTS


def test_heartbeats_are_not_listed(make_app):
    app, manager = make_app()
    start(manager, "alpha", "alpha-1")
    for _ in range(5):
        manager.handle_heartbeat("alpha-1")
    events = app.test_client().get("/lifecycle/status").get_json()["events"]
    assert [e["event"] for e in events] == ["status_changed", "service_started"]


def test_the_event_log_is_bounded_and_counts_what_it_dropped(make_app):
    app, manager = make_app()
    start(manager, "alpha", "alpha-1")
    manager.handle_error("alpha-1", "first")  # 4 events: error, 2 status changes, reconnecting
    for n in range(150):
        manager.handle_error("alpha-1", f"again {n}")  # already reconnecting: one event each
    body = app.test_client().get("/lifecycle/status").get_json()
    assert len(body["events"]) == _eventlog.DEFAULT_EVENTS
    assert body["events_seen"] == 2 + 4 + 150
    assert [e["summary"] for e in body["events"][:2]] == ["again 149", "again 148"]
    assert body["events"][-1]["summary"] == "again 50"


def test_long_error_texts_are_cut_and_a_stopped_service_keeps_its_name(make_app):
    app, manager = make_app()
    start(manager, "alpha", "alpha-1")
    manager.handle_error("alpha-1", "x" * 10_000)
    manager.stop_service("alpha-1")
    events = app.test_client().get("/lifecycle/status").get_json()["events"]
    assert (events[0]["event"], events[0]["name"]) == ("service_stopped", "alpha")
    error = next(e for e in events if e["event"] == "service_error")
    assert error["summary"] == "x" * _eventlog.MAX_TEXT + "\u2026"


def test_a_shut_down_manager_answers_closed_and_empty(make_app):
    app, manager = make_app()
    start(manager, "alpha", "alpha-1")
    manager.shutdown()
    body = app.test_client().get("/lifecycle/status").get_json()
    assert body["closed"] is True and body["services"] == [] and body["total"] == 0
    assert body["events"][0]["event"] == "service_stopped"


def test_managers_the_integrations_did_not_build_keep_no_log(make_lifecycle_manager, frozen_lifecycle):
    manager = make_lifecycle_manager()
    manager.start_service(ExtensionService("alpha", "1.0"))
    assert _eventlog.event_log(manager) is None


@pytest.mark.threaded
def test_events_recorded_from_many_threads_are_all_kept_with_distinct_numbers():
    manager = LifecycleManager(autostart=False)
    log = _eventlog.attach(manager, maxlen=1000)
    try:
        ids = [str(manager.start_service(ExtensionService(f"s{n}", "1.0"))) for n in range(4)]
        for id in ids:
            manager.handle_error(id, "first")
        before = log.seen()
        barrier = threading.Barrier(len(ids))

        def report(id: str) -> None:
            barrier.wait(5)
            for n in range(100):
                manager.handle_error(id, f"e{n}")

        threads = [threading.Thread(target=report, args=(id,)) for id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        events = log.recent(0.0)
        assert len(events) == before + 400
        assert len({e["seq"] for e in events}) == len(events)
    finally:
        manager.shutdown()


# -- Django ------------------------------------------------------------------------------------------------


@pytest.fixture
def django_manager() -> Iterator[Callable[..., LifecycleManager]]:
    overrides: list[Any] = []

    def configure(**settings: Any) -> LifecycleManager:
        override = override_settings(LIFECYCLE={**MANUAL, **settings})
        override.enable()
        overrides.append(override)
        return get_manager()

    integration._reset()
    yield configure
    for override in reversed(overrides):
        override.disable()
    integration._reset()


def test_django_serves_the_page_its_files_and_its_json(django_manager):
    manager = django_manager(HEARTBEAT_TOKEN=TOKEN)
    start(manager, "alpha", "alpha-1")
    client = Client()
    page = client.get("/lifecycle/")
    assert page.status_code == 200 and page["Content-Type"] == "text/html; charset=utf-8"
    assert page["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert client.get("/lifecycle/status.js")["Content-Type"] == "text/javascript; charset=utf-8"
    assert client.get("/lifecycle/status.css").status_code == 200
    head = client.head("/lifecycle/")
    assert head.status_code == 200 and head.content == b"" and int(head["Content-Length"]) == len(page.content)
    assert client.get("/lifecycle/status").status_code == 401
    body = json.loads(client.get("/lifecycle/status", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content)
    assert [(s["id"], s["attempt"]) for s in body["services"]] == [("alpha-1", 0)]
    assert [e["event"] for e in body["events"]] == ["status_changed", "service_started"]
    assert client.get("/lifecycle/status.txt").status_code == 404


def test_every_file_of_the_page_is_declared_as_package_data():
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [p.relative_to(root / "lifecycle" / "contrib").as_posix()
               for p in (root / "lifecycle" / "contrib" / "status_page").iterdir()]
    assert sorted(shipped) == ["status_page/index.html", "status_page/status.css", "status_page/status.js"]
    assert all(any(fnmatch.fnmatch(name, g) for g in globs["lifecycle.contrib"]) for name in shipped)


def test_a_log_hears_only_its_manager_and_goes_with_it():
    import gc
    import weakref

    from lifecycle.dispatch import SIGNALS

    def connected() -> int:
        nobody = object()  # logs are connected for every sender and filter themselves (public API only)
        return sum(isinstance(getattr(getattr(r, "receiver", None), "__self__", None), _eventlog.EventLog)
                   for signal in SIGNALS.values() for r in signal.receivers_for(nobody))

    gc.collect()  # logs of earlier tests' dropped managers go first
    baseline = connected()
    mine, other = LifecycleManager(autostart=False), LifecycleManager(autostart=False)
    log = _eventlog.attach(mine)
    assert _eventlog.attach(mine) is log and connected() == baseline + len(SIGNALS) - 1  # no heartbeat_received
    other.start_service(ExtensionService("elsewhere", "1.0"))
    assert log.recent(0.0) == []
    mine.start_service(ExtensionService("here", "1.0"))
    assert [e["name"] for e in log.recent(0.0)] == ["here", "here"]
    for manager in (mine, other):
        manager.shutdown()
    gone = weakref.ref(log)
    del log, mine, manager
    gc.collect()
    assert gone() is None and connected() == baseline
    other.shutdown()


# -- fleet mode --------------------------------------------------------------------------------------------


def fleet_apps(redis_server: Any, namespace: str, count: int = 2, **settings: Any) -> list[Flask]:
    """Flask apps of one fleet (one namespace on a real server), in manual mode: nothing ticks unless told."""
    apps = []
    for n in range(count):
        app = Flask(f"fleet{n}")
        app.config.update({"LIFECYCLE_REDIS_URL": redis_server.url, "LIFECYCLE_NAMESPACE": namespace,
                           "LIFECYCLE_AUTOSTART": False, "LIFECYCLE_HEARTBEAT_INTERVAL_SECS": 1,
                           "LIFECYCLE_HEARTBEAT_TIMEOUT_SECS": 30, **settings})
        Lifecycle(app)
        apps.append(app)
    return apps


def shared_view(body: dict[str, Any]) -> dict[str, Any]:
    """What every worker must answer alike: all but who answered and the ages, which move with the clock."""
    events = [{key: value for key, value in event.items() if key != "seconds_ago"} for event in body["events"]]
    services = [{key: value for key, value in service.items() if key != "seconds_since_heartbeat"}
                for service in body["services"]]
    return {**{key: body[key] for key in ("scope", "leader", "total", "counts", "events_seen")},
            "services": services, "events": events}


def holder_host(manager: LifecycleManager) -> str:
    token = manager.registry.leader()  # type: ignore[attr-defined]
    assert token is not None, "nobody holds the lease"
    return str(token).split(":")[0]


def test_in_fleet_mode_the_page_shows_the_fleets_services_leader_and_events(redis_server, namespace):
    pytest.importorskip("redis")
    apps = fleet_apps(redis_server, namespace)
    here, there = (app.extensions["lifecycle"] for app in apps)
    try:
        client = apps[0].test_client()
        first = client.get("/lifecycle/status").get_json()
        assert (first["scope"], first["services"], first["events"], first["leader"]) == ("fleet", [], [], None)
        assert "leaders" not in first  # one partition: the answer it always was
        sid = there.start_service(ExtensionService("shared", "1.0", id="shared-1"))  # by the other process
        there.handle_error(sid, "disk full")
        there.run_pending()  # the other process takes the lease

        body = client.get("/lifecycle/status").get_json()  # read from the log at once: no reader to wait for
        assert [(e["event"], e["name"], e["summary"]) for e in body["events"]][-2:] == [
            ("status_changed", "shared", "starting \u2192 running"), ("service_started", "shared", ""),
        ]
        listed = [(e["event"], e["name"], e["summary"]) for e in body["events"]]
        assert ("service_error", "shared", "disk full") in listed
        assert [(s["id"], s["status"], s["attempt"]) for s in body["services"]] == [("shared-1", "reconnecting", 1)]
        assert body["scope"] == "fleet" and there.is_leader and not here.is_leader
        assert body["leader"] == {"host": holder_host(there), "pid": os.getpid()} == {
            "host": body["host"], "pid": body["pid"]}
    finally:
        for manager in (here, there):
            manager.stop_all()
            manager.shutdown()


def test_in_fleet_mode_every_worker_answers_the_same_leader_and_events(redis_server, namespace):
    """Polls landing on different workers: the same leader (from the registry) and the same events, in order."""
    pytest.importorskip("redis")
    apps = fleet_apps(redis_server, namespace)
    one, two = (app.extensions["lifecycle"] for app in apps)
    try:
        # Events from before either page was ever asked are listed too: the log is read from its start.
        sid = one.start_service(ExtensionService("alpha", "1.0", id="alpha-1"))
        two.handle_error(sid, "disk full")
        two.start_service(ExtensionService("beta", "1.0", id="beta-1"))
        unled = [shared_view(app.test_client().get("/lifecycle/status").get_json()) for app in apps]
        assert unled[0] == unled[1] and unled[0]["leader"] is None

        two.run_pending()  # the second process takes the lease: both pages must name it, not themselves
        assert two.is_leader and not one.is_leader
        one.handle_heartbeat(sid)  # revives alpha, from the process that does not lead
        first, second = (app.test_client().get("/lifecycle/status").get_json() for app in apps)
        assert shared_view(first) == shared_view(second)
        assert first["leader"] == {"host": holder_host(two), "pid": os.getpid()}
        events = [(e["event"], e["service_id"], e.get("status")) for e in reversed(first["events"])]
        assert events == [
            ("service_started", "alpha-1", None), ("status_changed", "alpha-1", "running"),
            ("service_error", "alpha-1", None), ("status_changed", "alpha-1", "error"),
            ("status_changed", "alpha-1", "reconnecting"), ("reconnecting", "alpha-1", None),
            ("service_started", "beta-1", None), ("status_changed", "beta-1", "running"),
            ("status_changed", "alpha-1", "running"), ("reconnected", "alpha-1", None),
        ]
        assert [e["seq"] for e in first["events"]] == list(range(len(events), 0, -1)) == [
            e["seq"] for e in second["events"]]
        assert first["events_seen"] == len(events) and len({e["entry"] for e in first["events"]}) == len(events)
    finally:
        for manager in (one, two):
            manager.stop_all()
            manager.shutdown()


def test_in_fleet_mode_a_partitioned_namespace_answers_each_partitions_leader(redis_server, namespace):
    """One lease per partition: `leaders` names each one's holder in partition order, `leader` is partition 0's."""
    pytest.importorskip("redis")
    from lifecycle.redis import RedisRegistry

    other = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=3)
    apps = fleet_apps(redis_server, namespace, count=1, LIFECYCLE_REDIS_PARTITIONS=3)
    manager = apps[0].extensions["lifecycle"]
    try:
        client = apps[0].test_client()
        assert client.get("/lifecycle/status").get_json()["leaders"] == [None, None, None]
        assert other.lease("web-9:4243:abcdef", 30.0, partition=1).leader  # type: ignore[call-arg]
        manager.run_pending()  # takes the two leases nobody holds
        body = client.get("/lifecycle/status").get_json()
        here = {"host": body["host"], "pid": os.getpid()}
        assert body["leaders"] == [here, {"host": "web-9", "pid": 4243}, here] and body["leader"] == here
        manager.start_service(ExtensionService("shared", "1.0", id="shared-1"))
        events = client.get("/lifecycle/status").get_json()["events"]  # the partitions' logs, read from their start
        assert [(e["event"], e["service_id"]) for e in events][-1] == ("service_started", "shared-1")
    finally:
        other.release("web-9:4243:abcdef")
        other.client.close()
        manager.shutdown()
