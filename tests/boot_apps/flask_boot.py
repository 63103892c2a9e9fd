"""A Flask app that declares its services from the settings and starts nothing itself (for tests/test_gunicorn.py).

Every setting comes from `FLASK_LIFECYCLE_*` environment variables (parsed as JSON), e.g.
`FLASK_LIFECYCLE_SERVICES='[{"name": "silent", "version": "1", "id": "silent"}]'`.
"""

from __future__ import annotations

import logging

from flask import Flask

from lifecycle.contrib.flask import Lifecycle

logging.basicConfig(level=logging.INFO, format="%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s")

app = Flask(__name__)
app.config.from_prefixed_env()
Lifecycle(app)
