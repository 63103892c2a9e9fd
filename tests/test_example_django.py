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
    # The example starts its service in wsgi.py, which manage.py commands never load.
    assert not SERVICE_LOG.search(result.stderr), result.stderr


def test_lifecycle_status_without_url_says_so_exits_non_zero_and_starts_nothing() -> None:
    for args in [(), ("--json",)]:
        result = manage("lifecycle_status", *args, token="example-token")
        assert result.returncode == 2, result
        assert "--url is required: this command's own process serves nothing" in result.stderr
        assert not SERVICE_LOG.search(result.stderr), result.stderr


def test_the_wsgi_module_a_server_loads_starts_the_service() -> None:
    """What a server does (gunicorn, runserver): load project.wsgi; that starts the example's service."""
    code = "import project.wsgi as w; from lifecycle.contrib.django import get_manager; " \
           "print(get_manager().get_status('example-extension'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=MANAGE.parent, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "running"
    assert SERVICE_LOG.search(result.stderr), result.stderr
