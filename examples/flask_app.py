"""A Flask app whose lifecycle manager watches one declared extension service that heartbeats over HTTP.

Run it (from the repository root, after `pip install -e '.[flask,gunicorn]'`):

    flask --app examples/flask_app run --port 5000
    gunicorn --workers 1 --threads 4 --bind 127.0.0.1:5000 --chdir examples flask_app:app

then start the extension, kill it, start it again, and watch the app's log and
`curl http://127.0.0.1:5000/lifecycle/healthz`:

    python examples/extension_client.py --url http://127.0.0.1:5000/lifecycle

One worker process: with the in-memory registry each process watches its own copy of the
service, and a heartbeat reaches only the process that answers it (see docs/processes.md).
For several workers (or hosts) use fleet mode: one registry on Redis shared by all of them,
any worker takes the heartbeat and exactly one acts on a missed deadline (docs/fleet.md):

    FLASK_LIFECYCLE_REDIS_URL=redis://127.0.0.1:6379/0 FLASK_LIFECYCLE_NAMESPACE=example \\
        gunicorn --workers 3 --bind 127.0.0.1:5000 --chdir examples flask_app:app

The service is declared (`LIFECYCLE_SERVICES`): each worker asserts it as it starts serving,
with no request needed, keeps trying if Redis is down at boot (`/lifecycle/healthz` answers 503
"pending" meanwhile), and registers it again if Redis loses its data.

Settings come from `FLASK_LIFECYCLE_*` environment variables (Flask's `from_prefixed_env`,
values parsed as JSON), e.g. `FLASK_LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=3` or
`FLASK_LIFECYCLE_HEARTBEAT_TOKEN=s3cret`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, jsonify

import lifecycle
from lifecycle import LifecycleEvent
from lifecycle.contrib.flask import Lifecycle

SERVICE = "example-extension"
"""The extension's name, and its id too, so that the client can address it without a lookup."""

extension = Lifecycle()
log = logging.getLogger("example")


def log_event(sender: object, *, event: LifecycleEvent, **_: Any) -> None:
    """Every lifecycle event of this process, in the log (heartbeats are too many to show)."""
    if event.signal_name != "heartbeat_received":
        details = ", ".join(f"{key}={value}" for key, value in event.signal_kwargs().items())
        log.info("%s: %s", event.signal_name, details)


# Every manager's events, connected once at import: a worker may declare its service on a thread
# of its own as soon as the manager is built, before anything could connect to that manager.
# lifecycle.connect holds the receiver strongly; keep the handle to disconnect it some day.
_event_log = lifecycle.connect(log_event)


def create_app() -> Flask:
    """The app factory: defaults, then the environment, then lifecycle, which declares the one service."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s")
    app = Flask(__name__)
    app.config.update(
        LIFECYCLE_HEARTBEAT_INTERVAL_SECS=5,
        LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=15,
        # The extension pushes heartbeats and the app cannot dial it, so there is nothing to
        # reconnect: a silent service turns ERROR and its next heartbeat makes it RUNNING again.
        LIFECYCLE_AUTO_RECONNECT=False,
        # Desired state: started (or joined, in fleet mode) by every process as it starts serving.
        LIFECYCLE_SERVICES=[{"name": SERVICE, "version": "1.0", "id": SERVICE}],
    )
    app.config.from_prefixed_env()
    manager = extension.init_app(app)

    @app.get("/")
    def index() -> Any:
        return jsonify(pid=os.getpid(), services=len(manager), lifecycle="/lifecycle/services")

    return app


app = create_app()
