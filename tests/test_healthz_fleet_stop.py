"""/healthz in fleet mode for a declared service stopped on purpose by another process.

Two real Flask apps (two managers, as two workers would be) of one namespace on a real
redis-server / valkey-server, in manual mode. The one that did not stop the service learns of
the stop from the fleet's event log, so every worker answers 503 "stopped", not "pending"; a
declaration made again anywhere turns every worker's answer back to 200.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis_server as servers
from flask import Flask

from lifecycle import ExtensionService, LifecycleManager, RegistryUnavailable
from lifecycle.contrib.flask import Lifecycle

SEARCH = {"name": "search", "version": "1.0", "id": "search"}
OTHER = {"name": "thumbnails", "version": "3", "id": "thumbnails"}


@pytest.fixture
def make_app(redis_server: servers.RedisServer, namespace: str) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask(f"worker{len(apps)}")
        app.config.update({"LIFECYCLE_AUTOSTART": False, "LIFECYCLE_REDIS_URL": redis_server.url,
                           "LIFECYCLE_NAMESPACE": namespace, "LIFECYCLE_SERVICES": [SEARCH, OTHER], **config})
        Lifecycle(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["lifecycle"].shutdown()
    for app in apps:
        registry = app.extensions["lifecycle"].registry
        with contextlib.suppress(RegistryUnavailable):
            registry.clear()
        registry.client.close()


def manager_of(app: Flask) -> LifecycleManager:
    manager: LifecycleManager = app.extensions["lifecycle"]
    return manager


def test_a_service_stopped_by_another_worker_is_stopped_in_every_worker(make_app: Callable[..., Flask]) -> None:
    first, second = make_app(), make_app()
    one, two = first.test_client(), second.test_client()
    assert one.get("/lifecycle/healthz").status_code == 200  # the first request declares (starts) them
    assert two.get("/lifecycle/healthz").status_code == 200  # joins them
    manager_of(first).stop_service("search")
    for client in (one, two):
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "stopped", "services": 1, "failing": [], "pending": [],
                                       "stopped": [{"id": "search", "name": "search"}]}
    # Declared again (here in the worker that did not stop it): every worker is healthy again.
    manager_of(second).declare(ExtensionService("search", "1.0", id="search"))
    for client in (one, two):
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["stopped"] == []


def test_a_declared_service_not_registered_and_never_stopped_stays_pending(make_app: Callable[..., Flask]) -> None:
    first = make_app()
    one = first.test_client()
    assert one.get("/lifecycle/healthz").status_code == 200
    manager = manager_of(first)
    manager.registry.unregister("thumbnails")  # gone without a stop (as a loss would leave it): not "stopped"
    body = one.get("/lifecycle/healthz").get_json()
    assert body["status"] == "pending" and body["pending"] == [{"id": "thumbnails", "name": "thumbnails"}], body
    assert body["stopped"] == []


def test_a_worker_that_boots_after_the_stop_declares_it_again(make_app: Callable[..., Flask]) -> None:
    """As documented: the stop holds for the processes running; one that starts later declares it again."""
    first = make_app()
    one = first.test_client()
    assert one.get("/lifecycle/healthz").status_code == 200
    manager_of(first).stop_service("thumbnails")
    assert one.get("/lifecycle/healthz").get_json()["status"] == "stopped"
    late = make_app()  # a worker booted (or recycled) after the stop
    body = late.test_client().get("/lifecycle/healthz").get_json()  # its first request declares
    assert body["status"] == "ok" and body["stopped"] == [] and body["pending"] == [], body
    # Registered again: the worker that stopped it no longer reports it stopped.
    body = one.get("/lifecycle/healthz").get_json()
    assert body["status"] == "ok" and body["stopped"] == [], body
