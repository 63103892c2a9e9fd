"""Watching from boot under the development servers, and never in a command: real `flask run` and `manage.py`.

Each process is real and no request is ever sent: a serving process (with or without the
reloader: then only its child serves) times the silent declared service out; the reloader's
parent and a `flask shell` / `manage.py shell` that lives several timeouts raise no alarm.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_gunicorn import BOOT_MISSED, Process, boot_env

from lifecycle.contrib._boot import boot_role

pytestmark = pytest.mark.threaded

APPS = Path(__file__).resolve().parent / "boot_apps"
SETTINGS = {"HEARTBEAT_INTERVAL_SECS": 0.2, "HEARTBEAT_TIMEOUT_SECS": 0.5}
QUIET = 1.5  # three timeouts: a process that watched would have raised its alarm by then


@pytest.fixture
def run() -> object:
    started: list[Process] = []

    def start(argv: list[str], example: str) -> Process:
        env = {**boot_env(example, **SETTINGS), "PYTHONPATH": str(APPS), "WERKZEUG_RUN_MAIN": "",
               "RUN_MAIN": "", "FLASK_DEBUG": ""}
        process = Process(argv, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def alarms(process: Process) -> set[int]:
    return {int(m.group(1)) for m in process.matches(BOOT_MISSED)}


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", str(APPS / "flask_boot.py"), *args]


def manage(*args: str) -> list[str]:
    return [sys.executable, str(APPS / "manage.py"), *args]


@pytest.mark.parametrize("argv", [flask("run", "--port", "0"), manage("runserver", "127.0.0.1:0", "--noreload")],
                         ids=["flask-run", "runserver-noreload"])
def test_a_development_server_without_reloader_watches_from_boot(run, argv):
    process = run(argv, "flask" if "flask" in argv else "django")
    process.wait_for(lambda lines: alarms(process) == {process.proc.pid})


@pytest.mark.parametrize("argv", [flask("run", "--port", "0", "--debug"), manage("runserver", "127.0.0.1:0")],
                         ids=["flask-run-debug", "runserver"])
def test_with_the_reloader_only_its_child_watches(run, argv):
    """The reloader's parent loads the app too but only restarts its child: the child raises the alarm."""
    process = run(argv, "flask" if "flask" in argv else "django")
    child = process.wait_for(lambda lines: alarms(process))
    threading.Event().wait(QUIET)
    assert alarms(process) == child and process.proc.pid not in child, "\n".join(process.lines)


@pytest.mark.parametrize("argv", [flask("shell"), manage("shell", "-i", "python")], ids=["flask-shell", "manage-shell"])
def test_a_command_that_lives_long_raises_no_alarm(argv):
    """A command process serves nothing: its manager (Flask builds one; Django none) never times anything out."""
    script = f"import threading; threading.Event().wait({QUIET}); print('done')\n"
    example = "flask" if "flask" in argv else "django"
    env = {**os.environ, **boot_env(example, **SETTINGS), "PYTHONPATH": str(APPS)}
    done = subprocess.run(argv, input=script, capture_output=True, text=True, env=env, timeout=60, cwd=APPS)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "done" in done.stdout, output
    assert not re.search(BOOT_MISSED, output), output
    if example == "django":
        assert "lifecycle: registry" not in output, output  # a management command builds no manager


def test_anything_else_is_unknown():
    assert boot_role() is None  # pytest: no server, no flask or manage.py command
    assert json.loads(boot_env("django")["BOOT_LIFECYCLE"])["SERVICES"][0]["id"] == "silent"
