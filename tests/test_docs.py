"""The README and the docs site show examples that run as shown, and name tests that exist.

Every ```python block of README.md and docs/*.md is run, each in its own fresh interpreter
(so that receivers it connects and managers it builds die with it), unless the line before it
is `<!-- not run: <reason> -->`. A block whose first line names a file says how it is used:
`# test_*.py` and `# conftest.py` run under pytest; `# settings.py`, `# urls.py` and
`# wsgi.py` make a Django project that must pass its checks and serve a heartbeat. The README's
Flask app is served by the gunicorn command the README prints.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")  # indented too: a fence inside a list item
NOT_RUN = re.compile(r"^<!-- not run: (.*?) -->$")
PYTHON_ALIASES = {"py", "py3", "python3", "pycon", "ipython", "python-repl"}
FILENAME = re.compile(r"^# ([\w.]+\.py)\b")
DJANGO_FILES = {"settings.py", "urls.py", "wsgi.py"}
TIMEOUT = 100
BLOCK_TIMEOUT = 60  # for all stand-alone blocks together: they run side by side, each in seconds


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None

    @property
    def filename(self) -> str | None:
        match = FILENAME.match(self.code)
        return match.group(1) if match else None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening.group(1))
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
        before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.match(before)
        code = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
        yield Block(page, index + 1, opening.group(2), code, marker.group(1) if marker else None)
        index = end + 1


BLOCKS = [block for page in PAGES for block in code_blocks(page)]
PYTHON = [block for block in BLOCKS if block.language == "python"]
RUN_ALONE = [b for b in PYTHON if b.not_run is None and b.filename not in DJANGO_FILES
             and not (b.filename or "").startswith(("test_", "conftest"))]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_", "FLASK_"))}
    return {**env, **extra}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every stand-alone block, each in its own interpreter, all started at once (they mostly wait)."""
    cwd = tmp_path_factory.mktemp("blocks")
    started = {
        block.name: subprocess.Popen([sys.executable, "-c", block.code], cwd=cwd, env=clean_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for block in RUN_ALONE
    }
    results = {}
    deadline = time.monotonic() + BLOCK_TIMEOUT
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def test_the_pages_have_blocks_and_only_known_languages():
    assert {ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "docs" / "testing.md"} <= set(PAGES)
    assert len(RUN_ALONE) >= 10
    # A block cannot escape the runner under another name for Python (py, python3, pycon...).
    assert not {block.language for block in BLOCKS} & PYTHON_ALIASES


def test_every_block_not_run_says_why():
    for block in PYTHON:
        if block.not_run is not None:
            assert len(block.not_run.split()) >= 3, f"{block.name}: say why it is not run"


@pytest.mark.parametrize("block", RUN_ALONE, ids=lambda block: block.name)
def test_every_python_block_runs_as_shown(block: Block, ran: dict[str, subprocess.CompletedProcess[str]]):
    result = ran[block.name]
    assert result.returncode == 0, (
        f"{block.name} failed: make it run as shown, or put `<!-- not run: <why> -->` on the line before it"
        f"\n{block.code}\n{result.stdout}\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    for said, printed in PROMISED_OUTPUT:
        if said in block.code:
            assert result.stdout.splitlines() == printed, f"{block.name} printed {result.stdout!r}"


# What the text around a block says it prints: (a line of the block, the lines it prints).
PROMISED_OUTPUT = [
    ("print(manager.get_status(sid))                      # running", ["silent: search", "back: search", "running"]),
    ("print([manager.calculate_reconnect_delay(k)", ["[1.0, 2.0, 4.0, 8.0, 16.0]",
     "heartbeat_timeout_secs (10) must be >= heartbeat_interval_secs (30)"]),
    ("print(f\"{service_id}: {old_status.value} -> {new_status.value}\")", [
        "search: starting -> running", "search: running -> error", "search: error -> reconnecting",
        "search: reconnecting -> stopping", "search: stopping -> stopped"]),
    ("print(seen)", ["['service_started', 'status_changed']"]),
]


def test_each_promised_output_belongs_to_a_block():
    for said, _ in PROMISED_OUTPUT:
        assert any(said in block.code for block in RUN_ALONE), said


# -- pytest examples ---------------------------------------------------------------------------


def test_the_pytest_examples_pass(pytester: pytest.Pytester):
    tests = [b for b in PYTHON if (b.filename or "").startswith("test_")]
    assert len(tests) >= 2 and {b.page.name for b in tests} == {"testing.md"}
    for block in tests:
        pytester.makepyfile(**{block.filename.removesuffix(".py"): block.code})  # type: ignore[union-attr]
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=len(tests))


def test_the_lifecycle_config_override_example_changes_the_managers_config(pytester: pytest.Pytester):
    (conftest,) = [b for b in PYTHON if b.filename == "conftest.py"]
    pytester.makeconftest(conftest.code)
    pytester.makepyfile(test_override="""
def test_override(lifecycle_manager):
    assert lifecycle_manager.config.heartbeat_timeout_secs == 2
""")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- Flask ---------------------------------------------------------------------------------------


def test_the_flask_factory_example_serves_heartbeats_behind_its_token():
    pytest.importorskip("flask")
    (block,) = [b for b in PYTHON if b.page.name == "flask.md" and "def create_app" in b.code]
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(block.code, namespace)
    app = namespace["create_app"]()  # type: ignore[operator]
    try:
        client = app.test_client()
        assert client.post("/lifecycle/services/search/heartbeat").status_code == 401
        beat = client.post("/lifecycle/services/search/heartbeat", headers={"Authorization": "Bearer s3cret"})
        assert beat.status_code == 204
    finally:
        app.extensions["lifecycle"].shutdown()


def test_the_readme_flask_app_serves_heartbeats_under_gunicorn_as_shown(tmp_path):
    """The README's app.py, served by the README's own gunicorn line; then its curl lines, as requests."""
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    if not hasattr(os, "fork"):
        pytest.skip("gunicorn needs os.fork")
    from test_gunicorn import Process, _gunicorn_flags, request

    readme = [b for b in BLOCKS if b.page.name == "README.md"]
    (app,) = [b for b in readme if b.filename == "app.py"]
    assert 'app.config["LIFECYCLE_SERVICES"]' in app.code, "the README's quickstart declares its service"
    (tmp_path / "app.py").write_text(app.code)
    shell = "\n".join(b.code for b in readme if b.language == "bash")
    (command,) = [line for line in shell.splitlines() if line.startswith("gunicorn ")]
    argv = shlex.split(command)
    assert argv[argv.index("--workers") + 1] == "1", "the README must not show several workers without fleet mode"
    argv[argv.index("--bind") + 1] = "127.0.0.1:0"  # the README's port may be taken here
    server = Process([sys.executable, "-m", *argv[:1], *_gunicorn_flags(), *argv[1:], "--chdir", str(tmp_path)],
                     clean_env())
    try:
        port = server.wait_for(lambda lines: re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "\n".join(lines)))
        base = f"http://127.0.0.1:{port.group(1)}"
        curls = [shlex.split(line.partition("   #")[0]) for line in shell.splitlines() if line.startswith("curl ")]
        assert len(curls) == 2
        for curl in curls:
            url = curl[-1].replace("http://127.0.0.1:8000", base)
            token = curl[curl.index("-H") + 1].removeprefix("Authorization: Bearer ")
            method = curl[curl.index("-X") + 1] if "-X" in curl else "GET"
            status, body = request(url, method, token=token)
            if url.endswith("/healthz"):  # the worker declares its services as it boots, on a thread of its own
                status, body = until_healthy(url, token, status, body)
            assert status == (204 if method == "POST" else 200), (url, status, body)
        assert request(f"{base}/lifecycle/healthz", token=token)[1]["services"] == 1
        assert server.stop() == 0
    finally:
        server.stop(signal.SIGKILL)


def until_healthy(url: str, token: str, status: int, body: object) -> tuple[int, object]:
    """Ask `url` (a healthz) again while it answers 503 "pending" (a declared service not yet registered)."""
    from test_gunicorn import request

    deadline = time.monotonic() + TIMEOUT / 2
    while status == 503 and isinstance(body, dict) and body.get("status") == "pending":
        assert time.monotonic() < deadline, f"the declared services were never registered: {body}"
        time.sleep(0.05)  # a poll's pace: each round asks the server again
        status, body = request(url, token=token)
    return status, body


# -- Django --------------------------------------------------------------------------------------

DJANGO_BASE = """\
SECRET_KEY = "docs-test"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "project.urls"
DATABASES = {}
USE_TZ = True
INSTALLED_APPS = []
"""

DJANGO_CHECK = """\
import django
from django.core.management import call_command
from django.test import Client

import json
import time

import project.wsgi  # what a server loads (a page may start its service here)

call_command("check", "--fail-level", "WARNING")
client = Client()
headers = {"Authorization": "Bearer s3cret"}
deadline = time.monotonic() + 30
# Serving starts at the first request: declared SERVICES are then registered on a thread of their own.
while client.get("/lifecycle/healthz", headers=headers).status_code != 200:
    assert time.monotonic() < deadline, client.get("/lifecycle/healthz", headers=headers).json()
    time.sleep(0.05)  # a poll's pace: each round asks again
assert client.post("/lifecycle/services/%(id)s/heartbeat").status_code == 401
assert client.post("/lifecycle/services/%(id)s/heartbeat", headers=headers).status_code == 204
print(json.dumps(client.get("/lifecycle/healthz", headers=headers).json()))
"""


@pytest.mark.parametrize("page", ["README.md", "docs/django.md"])
def test_the_django_setup_passes_its_checks_and_serves_heartbeats(tmp_path, page: str):
    pytest.importorskip("django")
    files = {b.filename: b.code for b in PYTHON if b.page == ROOT / page and b.filename in DJANGO_FILES}
    assert set(files) == DJANGO_FILES, f"{page} shows {sorted(files)}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "__init__.py").write_text("")
    (project / "settings.py").write_text(DJANGO_BASE + files["settings.py"])
    (project / "urls.py").write_text(files["urls.py"])
    (project / "wsgi.py").write_text(files["wsgi.py"])
    # Started in wsgi.py (ExtensionService(..., id="x")) or declared in settings.py (SERVICES: {"id": "x"}).
    started = re.findall(r'id="([^"]+)"', files["wsgi.py"])
    declared = re.findall(r'"id": "([^"]+)"', files["settings.py"])
    (service_id,) = started or declared
    result = subprocess.run(
        [sys.executable, "-c", DJANGO_CHECK % {"id": service_id}], cwd=tmp_path, capture_output=True, text=True,
        env=clean_env(DJANGO_SETTINGS_MODULE="project.settings", LIFECYCLE_HEARTBEAT_TOKEN="s3cret"),
        timeout=TIMEOUT, check=False,
    )
    assert result.returncode == 0, result.stderr
    health = json.loads(result.stdout.splitlines()[-1])
    assert (health["status"], health["services"], health["failing"]) == ("ok", 1, []), health


# -- the guarantees name real tests --------------------------------------------------------------

TEST_REFERENCE = re.compile(r"`(?:tests/)?(test_\w+\.py)::(\w+)")


def test_every_test_the_docs_name_exists():
    named = {(m.group(1), m.group(2)) for page in PAGES for m in TEST_REFERENCE.finditer(page.read_text())}
    assert len(named) >= 100  # the guarantees page alone names well over a hundred
    missing = []
    for file, name in sorted(named):
        path = ROOT / "tests" / file
        defined = rf"^\s*(def|class) {name}\b|^{name} = "  # a hypothesis state machine's TestCase is assigned
        if not path.exists() or not re.search(defined, path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert missing == [], "the docs name tests that do not exist"
