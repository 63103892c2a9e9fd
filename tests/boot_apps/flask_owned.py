"""A Flask app whose gunicorn workers keep one STDIO child alive as a fleet (tests/test_gunicorn_ownership.py).

Each worker builds its manager on the shared namespace and declares the service, so every
worker is a candidate and exactly one owns (spawns) the child. Built on the library itself
rather than the Flask integration, whose registry keeps the default lease: these tests need a
lease of about a second to time take-overs. Environment: OWNED_REDIS_URL, OWNED_NAMESPACE,
OWNED_TTL (the lease, s), OWNED_SCRIPT (the child's shell line) and OWNED_PER_HOST=1 (a copy per
host, the host named by LIFECYCLE_HOST).
"""

from __future__ import annotations

import atexit
import logging
import os

from flask import Flask, jsonify

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceId, TransportConfig
from lifecycle.connectors import SubprocessConnector
from lifecycle.redis import RedisRegistry

logging.basicConfig(level=logging.INFO, format="%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s")

CONFIG = LifecycleConfig(heartbeat_interval_secs=0.2, heartbeat_timeout_secs=2.0, reconnect_delay_ms=100,
                         max_reconnect_delay_ms=400, max_reconnect_attempts=5, jitter=0.0)

service = ExtensionService("owned", "1", id=ServiceId("owned"), transport=TransportConfig(  # one id: every worker's
    command="/bin/sh", args=["-c", os.environ["OWNED_SCRIPT"]], timeout_secs=5.0,
    per_host=os.environ.get("OWNED_PER_HOST") == "1"))  # then each host's copy: owned@$LIFECYCLE_HOST

registry = RedisRegistry.from_url(os.environ["OWNED_REDIS_URL"], namespace=os.environ["OWNED_NAMESPACE"],
                                  lease_ttl_secs=float(os.environ["OWNED_TTL"]))
manager = LifecycleManager(registry, CONFIG, connector=SubprocessConnector())
atexit.register(manager.shutdown)  # a graceful worker exit (SIGTERM, --max-requests) hands the child over
manager.declare(service)

app = Flask(__name__)


@app.get("/")
def index() -> object:
    return jsonify(pid=os.getpid())
