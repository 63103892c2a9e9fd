"""lifecycle.contrib.prometheus and the Flask `metrics` endpoint, read back with prometheus_client's own parser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from lifecycle import ExtensionService, LifecycleConfig  # noqa: E402
from lifecycle.contrib.prometheus import LifecycleCollector  # noqa: E402

CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=10, max_reconnect_attempts=1,
                      reconnect_delay_ms=1000, jitter=0)

NAMES = {
    "lifecycle_services": "gauge",
    "lifecycle_heartbeats": "counter",
    "lifecycle_heartbeat_timeouts": "counter",
    "lifecycle_reconnect_attempts": "counter",
    "lifecycle_reconnects": "counter",
    "lifecycle_reconnect_failures": "counter",
    "lifecycle_errors": "counter",
    "lifecycle_events_dropped": "counter",
    "lifecycle_detection_lag_seconds": "histogram",
}


def parse(text: str) -> dict[str, Any]:
    """Family name -> family, as prometheus_client's text parser reads the exposition."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    for family in families.values():
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {sample_name} {labels}")


def exercise(frozen_lifecycle: Any, manager: Any) -> None:
    """Two services, three heartbeats, a timeout 0.2 s late, a failed attempt, an error report."""
    a = manager.start_service(ExtensionService("a", "1"))
    manager.start_service(ExtensionService("b", "1"))
    for _ in range(3):
        manager.handle_heartbeat(a)
    frozen_lifecycle.freezer.tick(10.2)
    manager.run_pending()  # both time out, 0.2 s after their deadline; attempt 1 scheduled for each
    frozen_lifecycle.advance(1)  # the attempts find no heartbeat: both give up (max 1 attempt)
    manager.handle_error(a, "disk full")


def test_the_collector_exposes_the_snapshot_under_the_contract_names(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    registry = CollectorRegistry()
    registry.register(LifecycleCollector(manager))
    exercise(frozen_lifecycle, manager)
    families = parse(generate_latest(registry).decode())
    assert {name: families[name].type for name in NAMES} == NAMES
    m = manager.metrics()
    assert value(families, "lifecycle_services", status="running") == 0
    assert value(families, "lifecycle_services", status="error") == m.services["error"] == 1
    assert value(families, "lifecycle_services", status="reconnecting") == 1  # a: error, then reconnecting
    assert value(families, "lifecycle_heartbeats_total") == 3
    assert value(families, "lifecycle_heartbeat_timeouts_total") == 2
    assert value(families, "lifecycle_reconnect_attempts_total") == 3
    assert value(families, "lifecycle_reconnect_failures_total") == 2
    assert value(families, "lifecycle_errors_total") == 1
    assert value(families, "lifecycle_events_dropped_total") == 0
    assert value(families, "lifecycle_detection_lag_seconds_count") == 2
    assert value(families, "lifecycle_detection_lag_seconds_sum") == pytest.approx(0.4)
    assert value(families, "lifecycle_detection_lag_seconds_bucket", le="0.1") == 0
    assert value(families, "lifecycle_detection_lag_seconds_bucket", le="0.25") == 2
    assert value(families, "lifecycle_detection_lag_seconds_bucket", le="+Inf") == 2


def test_the_collector_reads_at_scrape_time(make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    registry = CollectorRegistry()
    registry.register(LifecycleCollector(manager, labels={"worker": "w1"}))
    assert registry.get_sample_value("lifecycle_heartbeats_total", {"worker": "w1"}) == 0
    sid = manager.start_service(ExtensionService("s", "1"))
    manager.handle_heartbeat(sid)
    assert registry.get_sample_value("lifecycle_heartbeats_total", {"worker": "w1"}) == 1
    assert registry.get_sample_value("lifecycle_services", {"worker": "w1", "status": "running"}) == 1


def test_the_collector_refuses_bad_arguments(make_lifecycle_manager):
    with pytest.raises(TypeError, match="LifecycleManager"):
        LifecycleCollector(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'status'"):
        LifecycleCollector(make_lifecycle_manager(CFG), labels={"status": "x"})


# -- the Flask endpoint -------------------------------------------------------------------------


@pytest.fixture
def flask_app() -> Iterator[Any]:
    pytest.importorskip("flask")
    from flask import Flask

    from lifecycle.contrib.flask import Lifecycle

    app = Flask("metrics")
    app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_HEARTBEAT_TOKEN="tok3n")
    Lifecycle(app)
    yield app
    app.extensions["lifecycle"].shutdown()


def test_the_flask_metrics_endpoint_is_text_exposition_behind_the_token(flask_app):
    client = flask_app.test_client()
    assert client.get("/lifecycle/metrics").status_code == 401
    assert client.get("/lifecycle/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    manager = flask_app.extensions["lifecycle"]
    sid = manager.start_service(ExtensionService("svc", "1"))
    auth = {"Authorization": "Bearer tok3n"}
    assert client.post(f"/lifecycle/services/{sid}/heartbeat", headers=auth).status_code == 204
    response = client.get("/lifecycle/metrics", headers=auth)
    assert response.status_code == 200
    assert response.content_type == prometheus_client.CONTENT_TYPE_LATEST
    families = parse(response.get_data(as_text=True))
    pid = str(os.getpid())
    assert value(families, "lifecycle_heartbeats_total", pid=pid) == 1
    assert value(families, "lifecycle_services", pid=pid, status="running") == 1
    assert client.post("/lifecycle/metrics", headers=auth).status_code == 405


def test_without_prometheus_client_the_endpoint_says_what_to_install(flask_app, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    response = flask_app.test_client().get("/lifecycle/metrics", headers={"Authorization": "Bearer tok3n"})
    assert response.status_code == 501
    assert "service-lifecycle[prometheus]" in response.get_json()["message"]
