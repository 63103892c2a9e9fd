"""The Django example project still works, run as a user would: `manage.py check`, `lifecycle_status`, its wsgi.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

MANAGE = Path(__file__).resolve().parent.parent / "examples" / "django_project" / "manage.py"


def manage(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    if token is not None:
        env["LIFECYCLE_HEARTBEAT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, str(MANAGE), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


# What the library logs when a service starts or stops (the example shows INFO on the console).
SERVICE_LOG = re.compile(r"lifecycle: service .* (started|stopped)")


def test_check_warns_without_a_token_passes_with_one_and_starts_no_service() -> None:
    result = manage("check")
    assert result.returncode == 0, result.stderr
    assert "lifecycle.W001" in result.stderr
    result = manage("check", token="example-token")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "lifecycle.W001" not in result.stderr
    # The example declares its service in SERVICES, which manage.py commands never assert.
    assert not SERVICE_LOG.search(result.stderr), result.stderr


def test_lifecycle_status_without_url_says_so_exits_non_zero_and_starts_nothing() -> None:
    for args in [(), ("--json",)]:
        result = manage("lifecycle_status", *args, token="example-token")
        assert result.returncode == 2, result
        assert "--url is required: this command's own process serves nothing" in result.stderr
        assert not SERVICE_LOG.search(result.stderr), result.stderr


SERVES = """\
import threading, time
import project.wsgi
from lifecycle.contrib import start_watching
from lifecycle.contrib.django import get_manager

manager = get_manager()
print(manager.get_status("example-extension"))  # loaded, not serving yet: nothing declared
start_watching()  # what a server does as a process starts serving (a worker's boot, runserver)
deadline = time.monotonic() + 30
while manager.get_status("example-extension") is None and time.monotonic() < deadline:
    threading.Event().wait(0.05)  # declared on a thread of its own
print(manager.get_status("example-extension"))
"""


def test_the_declared_service_starts_where_the_project_serves() -> None:
    """Loading project.wsgi declares nothing; a process that serves declares SERVICES, and its events are logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    result = subprocess.run([sys.executable, "-c", SERVES], capture_output=True, text=True, env=env,
                            cwd=MANAGE.parent, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "running"], result
    assert SERVICE_LOG.search(result.stderr), result.stderr
    # The example's own log, connected before the manager was built: the start is there too.
    assert re.search(r"example INFO service_started: service_id=example-extension", result.stderr), result.stderr
