"""Declared services from the settings: `LIFECYCLE_SERVICES` (Flask) and `LIFECYCLE["SERVICES"]` (Django).

Real Flask and Django. Each process declares them when it starts serving (its first request,
or right after a fork); every problem of an entry is named by its index and field, with the
other settings' problems, in one error; `/healthz` answers 503 while a declared service is
not registered yet. Manual mode under frozen time, and real threads with the engine's backoff.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django_setup  # noqa: F401  (configures Django before the imports below)
import freezegun
import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from flask import Flask

import lifecycle.contrib.django as integration
from lifecycle import ExtensionService, LifecycleManager, ServiceStatus, TransportType
from lifecycle.contrib import ConfigurationError
from lifecycle.contrib._process import _declared, declared_services
from lifecycle.contrib._settings import check_settings, derived_service_id
from lifecycle.contrib.django import get_manager
from lifecycle.contrib.flask import Lifecycle

WAIT = 10.0

SEARCH = {"name": "search", "version": "1.0", "id": "search", "description": "full text",
          "capabilities": ["query", {"name": "index", "version": "2"}],
          "transport": {"transport_type": "tcp", "address": "127.0.0.1", "port": 7000, "timeout_secs": 5},
          "metadata": {"team": "core"}}
NO_ID = {"name": "thumbnails", "version": "3"}


class Refusing:
    """A connector whose first `failures` connects raise; thread-safe, counts its calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self._lock = threading.Lock()

    def connect(self, service: ExtensionService) -> None:
        with self._lock:
            self.calls += 1
            call = self.calls
        if call <= self.failures:
            raise ConnectionError(f"connect #{call} refused")


def eventually(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


# -- parsing -----------------------------------------------------------------------------------


def spell(key: str) -> str:
    return f"LIFECYCLE_{key}"


def test_entries_become_the_services_every_process_declares() -> None:
    settings, errors = check_settings({"SERVICES": [SEARCH, NO_ID]}, spell)
    assert errors == [] and settings is not None
    search, thumbnails = settings.services
    assert (search.id, search.name, search.version, search.description) == ("search", "search", "1.0", "full text")
    assert [(c.name, c.version) for c in search.capabilities] == [("query", ""), ("index", "2")]
    assert search.transport.transport_type is TransportType.TCP and search.transport.port == 7000
    assert search.transport.timeout_secs == 5.0 and search.metadata == {"team": "core"}
    assert thumbnails.id == derived_service_id("thumbnails", "3")


def test_an_id_left_out_is_derived_from_name_and_version_the_same_everywhere() -> None:
    first = derived_service_id("thumbnails", "3")
    assert first == derived_service_id("thumbnails", "3")  # not a random uuid: every process agrees
    assert first != derived_service_id("thumbnails", "4") != derived_service_id("thumbnail", "3")
    assert first == str(uuid.uuid5(uuid.UUID("7d1e6f0a-3c2b-5e8f-9a4d-6c1b2e3f4a5b"), "thumbnails\n3"))  # as documented
    settings, _ = check_settings({"SERVICES": [NO_ID]}, spell)
    again, _ = check_settings({"SERVICES": [dict(NO_ID)]}, spell)
    assert settings is not None and again is not None and settings.services[0].id == again.services[0].id


def test_every_problem_of_every_entry_is_named_by_setting_index_and_field() -> None:
    _, errors = check_settings({
        "JITTER": 5,
        "SERVICES": [
            SEARCH,
            {"name": "b", "version": "1", "transport": {"timeout_secs": -1, "port": 70000, "args": [1],
                                                       "transport_type": "carrier-pigeon", "tiemout_secs": 1}},
            "search",
            {"version": 2, "capabilities": [{"nam": "x"}], "metadata": []},
            {"name": "search", "version": "2", "id": "search"},
        ],
    }, spell)
    assert errors[0].key == "LIFECYCLE_JITTER"  # the other settings' problems in the same list
    keys = [e.key for e in errors if e.setting == "SERVICES"]
    assert keys == [
        "LIFECYCLE_SERVICES[1].transport.tiemout_secs",
        "LIFECYCLE_SERVICES[1].transport.timeout_secs",
        "LIFECYCLE_SERVICES[1].transport.port",
        "LIFECYCLE_SERVICES[1].transport.args[0]",
        "LIFECYCLE_SERVICES[1].transport.transport_type",
        "LIFECYCLE_SERVICES[2]",
        "LIFECYCLE_SERVICES[3].name",
        "LIFECYCLE_SERVICES[3].version",
        "LIFECYCLE_SERVICES[3].metadata",
        "LIFECYCLE_SERVICES[3].capabilities[0].nam",
        "LIFECYCLE_SERVICES[4].name",
        "LIFECYCLE_SERVICES[4].id",
    ]
    by_key = {e.key: e for e in errors}
    assert by_key["LIFECYCLE_SERVICES[1].transport.tiemout_secs"].hint == "did you mean 'timeout_secs'?"
    assert by_key["LIFECYCLE_SERVICES[1].transport.timeout_secs"].message == "must be > 0, got -1"
    assert by_key["LIFECYCLE_SERVICES[3].name"].message == "is required"
    assert "declared twice (also LIFECYCLE_SERVICES[0].name)" in by_key["LIFECYCLE_SERVICES[4].name"].message


@pytest.mark.parametrize("value", ["search", {"name": "search"}, 3])
def test_services_must_be_a_list(value: object) -> None:
    _, errors = check_settings({"SERVICES": value}, spell)
    assert [(e.key, e.code) for e in errors] == [("LIFECYCLE_SERVICES", "type")]


# -- Flask ---------------------------------------------------------------------------------------


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(*, connector: object = None, **config: Any) -> Flask:
        app = Flask(f"declared{len(apps)}")
        app.config.update({"LIFECYCLE_AUTOSTART": False, **config})
        Lifecycle(app, connector=connector)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["lifecycle"].shutdown()


def manager_of(app: Flask) -> LifecycleManager:
    manager: LifecycleManager = app.extensions["lifecycle"]
    return manager


def test_flask_declares_its_services_by_the_first_request(make_app: Callable[..., Flask]) -> None:
    app = make_app(LIFECYCLE_SERVICES=[SEARCH, NO_ID])
    response = app.test_client().get("/lifecycle/healthz")
    manager = manager_of(app)
    thumbnails = derived_service_id("thumbnails", "3")
    assert manager.get_status("search") is ServiceStatus.RUNNING
    assert manager.get_status(thumbnails) is ServiceStatus.RUNNING
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "services": 2, "failing": [], "pending": [], "stopped": []}
    service = manager.registry.get("search")
    assert service is not None and service.transport.port == 7000 and service.has_capability("index")
    assert declared_services(manager) == (("search", "search"), (thumbnails, "thumbnails"))


def test_flask_declares_once_per_process(make_app: Callable[..., Flask]) -> None:
    connector = Refusing()
    app = make_app(connector=connector, LIFECYCLE_SERVICES=[SEARCH])
    client = app.test_client()
    for _ in range(3):
        assert client.get("/lifecycle/healthz").status_code == 200
    assert connector.calls == 1


def test_flask_an_invalid_entry_is_one_error_with_the_other_bad_keys() -> None:
    app = Flask("bad")
    app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_HEARTBEAT_TIMEOUT=3,
                      LIFECYCLE_SERVICES=[SEARCH, {"name": "db", "version": "1", "transport": {"timeout_secs": 0}}])
    with pytest.raises(ConfigurationError) as caught:
        Lifecycle(app)
    assert [key for key, _ in caught.value.problems] == [
        "LIFECYCLE_HEARTBEAT_TIMEOUT", "LIFECYCLE_SERVICES[1].transport.timeout_secs"]
    assert "\n  LIFECYCLE_SERVICES[1].transport.timeout_secs: must be > 0, got 0" in str(caught.value)
    assert "lifecycle" not in app.extensions


def test_flask_healthz_503_while_a_declared_service_cannot_be_registered(make_app: Callable[..., Flask]) -> None:
    connector = Refusing(failures=2)
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app(connector=connector, LIFECYCLE_SERVICES=[SEARCH])
        client = app.test_client()
        manager = manager_of(app)
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "pending", "services": 0, "failing": [],
                                       "pending": [{"id": "search", "name": "search"}], "stopped": []}
        frozen.tick(0.5)
        manager.run_pending()  # the first retry: refused again
        assert connector.calls == 2 and client.get("/lifecycle/healthz").status_code == 503
        frozen.tick(1.0)
        manager.run_pending()  # the second retry, a backoff later: connects
        assert connector.calls == 3
        response = client.get("/lifecycle/healthz")
    assert response.status_code == 200 and response.get_json()["pending"] == []
    assert manager.get_status("search") is ServiceStatus.RUNNING


def test_flask_with_threads_healthz_turns_200_when_the_retries_succeed(make_app: Callable[..., Flask]) -> None:
    connector = Refusing(failures=2)
    app = make_app(connector=connector, LIFECYCLE_AUTOSTART=True, LIFECYCLE_SERVICES=[SEARCH, NO_ID])
    client = app.test_client()
    first = client.get("/lifecycle/healthz")  # declared off the request thread: not registered yet
    assert first.status_code == 503 and first.get_json()["status"] == "pending"
    manager = manager_of(app)
    ok = eventually(lambda: client.get("/lifecycle/healthz").status_code == 200)
    assert ok, client.get("/lifecycle/healthz").get_json()
    assert manager.get_status("search") is ServiceStatus.RUNNING
    assert manager.get_status(derived_service_id("thumbnails", "3")) is ServiceStatus.RUNNING
    assert connector.calls == 4  # search: refused twice, then connected; thumbnails: at once


def test_flask_healthz_stays_503_stopped_for_a_declared_service_stopped_on_purpose(
        make_app: Callable[..., Flask]) -> None:
    """stop_service on a declared service: /healthz says 503 "stopped" (not "ok", not "pending"),
    and no retry, however late, brings it back; declaring it again clears the mark."""
    connector = Refusing()
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app(connector=connector, LIFECYCLE_SERVICES=[SEARCH])
        client = app.test_client()
        manager = manager_of(app)
        assert client.get("/lifecycle/healthz").status_code == 200
        manager.stop_service("search")
        for _ in range(3):  # backoff delays, a heartbeat timeout and more: nothing revives it
            frozen.tick(120)
            manager.run_pending()
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "stopped", "services": 0, "failing": [], "pending": [],
                                       "stopped": [{"id": "search", "name": "search"}]}
        assert manager.get_status("search") is None and connector.calls == 1
        manager.declare(ExtensionService("search", "1.0", id="search"))
        response = client.get("/lifecycle/healthz")
    assert response.status_code == 200 and response.get_json()["stopped"] == []


def test_flask_healthz_names_failing_before_stopped(make_app: Callable[..., Flask]) -> None:
    with freezegun.freeze_time("2026-01-01"):
        app = make_app(LIFECYCLE_SERVICES=[SEARCH, NO_ID])
        client = app.test_client()
        manager = manager_of(app)
        client.get("/lifecycle/healthz")
        manager.stop_service("search")
        thumbnails = derived_service_id("thumbnails", "3")
        manager.handle_error(thumbnails, "broken")
        body = client.get("/lifecycle/healthz").get_json()
    assert body["status"] == "failing" and body["stopped"] == [{"id": "search", "name": "search"}]
    assert [f["id"] for f in body["failing"]] == [thumbnails]


def test_flask_without_services_healthz_reads_as_before(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert app.test_client().get("/lifecycle/healthz").get_json() == {"status": "ok", "services": 0, "failing": []}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_declares_again(make_app: Callable[..., Flask]) -> None:
    app = make_app(LIFECYCLE_SERVICES=[SEARCH])
    app.test_client().get("/lifecycle/healthz")  # this process serves and declared
    manager = manager_of(app)
    assert _declared[manager].pid == os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: a new process of the fleet, which declared in the fork hook
        code = 0 if _declared[manager].pid == os.getpid() and manager.get_status("search") == "running" else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_does_not_revive_a_service_stopped_on_purpose(make_app: Callable[..., Flask]) -> None:
    app = make_app(LIFECYCLE_SERVICES=[SEARCH, NO_ID])
    app.test_client().get("/lifecycle/healthz")
    manager = manager_of(app)
    manager.stop_service("search")
    pid = os.fork()
    if pid == 0:  # declared again in the fork hook, all but the stopped one
        thumbnails = derived_service_id("thumbnails", "3")
        revived = manager.get_status("search") is not None
        code = 0 if not revived and manager.get_status(thumbnails) == "running" else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- Django --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_django_manager() -> Iterator[None]:
    integration._reset()
    yield
    integration._reset()


@pytest.fixture
def configure() -> Iterator[Callable[..., LifecycleManager]]:
    overrides: list[override_settings] = []

    def apply(**values: Any) -> LifecycleManager:
        values.setdefault("AUTOSTART", False)
        override = override_settings(LIFECYCLE=values)
        override.enable()
        overrides.append(override)
        return get_manager()

    yield apply
    for override in reversed(overrides):
        override.disable()


def test_django_declares_its_services_by_the_first_request(configure: Callable[..., LifecycleManager]) -> None:
    manager = configure(SERVICES=[SEARCH, NO_ID])
    response = Client().get("/lifecycle/healthz")
    assert response.status_code == 200
    assert manager.get_status("search") is ServiceStatus.RUNNING
    assert manager.get_status(derived_service_id("thumbnails", "3")) is ServiceStatus.RUNNING


def test_django_an_invalid_entry_is_a_check_error_naming_setting_and_index() -> None:
    bad = {"AUTOSTART": False, "JITTER": 5,
           "SERVICES": [SEARCH, {"name": "db", "version": "1", "transport": {"timeout_secs": 0, "prot": 1}}]}
    with override_settings(LIFECYCLE=bad):
        messages = [m for m in run_checks(tags=["lifecycle"]) if m.id.startswith("lifecycle.E")]
        with pytest.raises(ImproperlyConfigured) as caught:
            get_manager()
    texts = {m.msg: m.id for m in messages}
    assert texts["LIFECYCLE['SERVICES'][1].transport.timeout_secs: must be > 0, got 0"] == "lifecycle.E003"
    assert texts["LIFECYCLE['SERVICES'][1].transport.prot: unknown field"] == "lifecycle.E003"
    assert any(key.startswith("LIFECYCLE['JITTER']") for key in texts)
    assert "LIFECYCLE['SERVICES'][1].transport.timeout_secs" in str(caught.value)


def test_django_healthz_503_while_a_declared_service_cannot_be_registered(
        configure: Callable[..., LifecycleManager]) -> None:
    connector = Refusing(failures=1)
    client = Client()
    with freezegun.freeze_time("2026-01-01") as frozen:
        manager = configure(CONNECTOR=connector, SERVICES=[SEARCH])
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 503
        assert response.json()["pending"] == [{"id": "search", "name": "search"}]
        frozen.tick(0.5)
        manager.run_pending()
        response = client.get("/lifecycle/healthz")
    assert response.status_code == 200 and response.json()["pending"] == []
    assert manager.get_status("search") is ServiceStatus.RUNNING and connector.calls == 2


def test_django_with_threads_declares_after_the_first_request(configure: Callable[..., LifecycleManager]) -> None:
    connector = Refusing(failures=1)
    manager = configure(AUTOSTART=True, CONNECTOR=connector, SERVICES=[SEARCH])
    client = Client()
    client.get("/lifecycle/healthz")
    assert eventually(lambda: client.get("/lifecycle/healthz").status_code == 200)
    assert manager.get_status("search") is ServiceStatus.RUNNING


def test_django_healthz_503_stopped_for_a_declared_service_stopped_on_purpose(
        configure: Callable[..., LifecycleManager]) -> None:
    manager = configure(SERVICES=[SEARCH])
    client = Client()
    assert client.get("/lifecycle/healthz").status_code == 200
    manager.stop_service("search")
    response = client.get("/lifecycle/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "stopped"
    assert response.json()["stopped"] == [{"id": "search", "name": "search"}]
