"""A Flask app supervises a real child through its LIFECYCLE_CONNECTOR setting."""

from __future__ import annotations

import pytest
from transport_support import WAIT, child_service, proc_state

from lifecycle import LifecycleManager, ServiceStatus
from lifecycle.connectors import TransportConnector
from lifecycle.events import Heartbeat
from lifecycle.testing import EventRecorder

pytest.importorskip("flask")
from flask import Flask

from lifecycle.contrib.flask import Lifecycle


def test_a_flask_app_keeps_a_child_alive_through_its_connector_setting():
    connector = TransportConnector()
    app = Flask("transports")
    app.config.update(LIFECYCLE_CONNECTOR=connector, LIFECYCLE_HEARTBEAT_INTERVAL_SECS=0.1,
                      LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=0.5)
    Lifecycle(app)
    manager: LifecycleManager = app.extensions["lifecycle"]
    recorder = EventRecorder().record(manager)
    try:
        sid = manager.start_service(child_service("flask-child", "steady"))
        pid = connector.connector_for(manager.registry.get(sid)).pid(sid)  # type: ignore[arg-type, attr-defined]
        assert recorder.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 5, timeout=WAIT)
        reply = app.test_client().get(f"/lifecycle/services/{sid}")
        assert reply.status_code == 200 and reply.get_json()["status"] == "running"
        assert manager.get_status(sid) is ServiceStatus.RUNNING
    finally:
        recorder.close()
        manager.shutdown()
    assert pid is not None and proc_state(pid) is None
