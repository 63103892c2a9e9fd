"""The Django example project still works: `manage.py check` and `manage.py lifecycle_status`, run as a user would."""

from __future__ import annotations

import json
import os
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


def test_check_warns_without_a_token_and_passes_with_one() -> None:
    result = manage("check")
    assert result.returncode == 0, result.stderr
    assert "lifecycle.W001" in result.stderr
    result = manage("check", token="example-token")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "lifecycle.W001" not in result.stderr


def test_lifecycle_status_shows_the_example_service() -> None:
    result = manage("lifecycle_status", token="example-token")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "VERSION", "STATUS"]
    assert row.split()[:4] == ["example-extension", "example-extension", "1.0", "running"]
    result = manage("lifecycle_status", "--json", token="example-token")
    assert result.returncode == 0, result.stderr
    (service,) = json.loads(result.stdout)
    assert (service["id"], service["status"]) == ("example-extension", "running")
