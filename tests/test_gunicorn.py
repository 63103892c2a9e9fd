"""The example Flask app under a real gunicorn: fork safety with --preload, and heartbeats over HTTP.

Each test starts gunicorn on 127.0.0.1 port 0 and reads its log as it is written; every wait
is for a log line or an HTTP answer, bounded by a generous deadline.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis_server as servers

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

pytestmark = [
    pytest.mark.threaded,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn needs os.fork"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERVICE = "example-extension"
DEADLINE = 30.0  # generous: gunicorn boots in well under a second even on a loaded machine


@functools.cache
def _gunicorn_flags() -> list[str]:
    help_text = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True).stdout
    # gunicorn 27 opens a control socket in ~/.gunicorn by default; tests run side by side must not share it.
    return ["--no-control-socket"] if "--no-control-socket" in help_text else []


class Process:
    """A child process whose merged output is collected line by line, for waiting on."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env},
            cwd=EXAMPLES.parent,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], Any], timeout: float = DEADLINE) -> Any:
        """The first truthy `predicate(lines)` within `timeout`; fails the test with the log otherwise."""
        result = None

        def check() -> bool:
            nonlocal result
            result = predicate(self.lines)
            return bool(result) or (self.proc.poll() is not None and not self.reader.is_alive())

        with self.cond:
            self.cond.wait_for(check, timeout)
            if not result:
                pytest.fail("waited in vain; output so far:\n" + "\n".join(self.lines))
        return result

    def matches(self, pattern: str) -> list[re.Match[str]]:
        with self.cond:
            return [m for m in map(re.compile(pattern).search, self.lines) if m]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.reader.join(DEADLINE)


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str], dict[str, str]], Process]]:
    """Start a child process; every one still running is killed at teardown, even when the test failed."""
    started: list[Process] = []

    def start(argv: list[str], env: dict[str, str]) -> Process:
        started.append(Process(argv, env))
        return started[-1]

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture
def start_gunicorn(spawn: Callable[[list[str], dict[str, str]], Process]) -> Callable[..., tuple[Process, str]]:
    """Start an example app under gunicorn (Flask's by default); returns the process and its base URL."""

    def start(*args: str, app: str = "flask_app:app", chdir: Path = EXAMPLES, **env: str) -> tuple[Process, str]:
        argv = [sys.executable, "-m", "gunicorn", *_gunicorn_flags(), "--bind", "127.0.0.1:0",
                "--chdir", str(chdir), *args, app]
        server = spawn(argv, env)
        port = server.wait_for(lambda lines: re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "\n".join(lines)))
        return server, f"http://127.0.0.1:{port.group(1)}"

    return start


def request(url: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def eventually(check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Retry `check` (an HTTP question) until it answers truthily; the server offers nothing to wait on."""
    end = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = check()
        if result or time.monotonic() > end:
            assert result, "condition not met in time"
            return result
        pause.wait(0.05)


MISSED = r"pid=(\d+) lifecycle WARNING lifecycle: service .* missed its heartbeat deadline"


def preloaded_workers_detect_the_timeout(server: Process) -> tuple[int, set[int]]:
    """Wait until both workers log the silent service's timeout; return the master's and the workers' pids.

    The deadline was armed in the master before the fork and is measured on the same monotonic
    clock everywhere, so once the workers have seen it pass, a master that watched would have too.
    The master is then given a further second (several timeouts) to prove it stays quiet.
    """
    master = int(server.wait_for(lambda lines: re.search(r"Listening at: \S+ \((\d+)\)", "\n".join(lines))).group(1))
    workers: set[int] = server.wait_for(
        lambda lines: (pids := set(re.findall(r"Booting worker with pid: (\d+)", "\n".join(lines))))
        and len(pids) == 2 and {int(p) for p in pids}
    )
    server.wait_for(lambda lines: {int(m.group(1)) for m in server.matches(MISSED)} >= workers)
    threading.Event().wait(1.0)
    return master, workers


def test_preloaded_workers_detect_timeouts_and_the_master_that_serves_nothing_raises_none(start_gunicorn):
    """--preload: the manager is made in the master before the fork; the service is declared, so
    each worker starts it as it is forked, watches from then on and sees it time out; the master,
    which serves no request and so can hear no heartbeat, starts nothing and raises no false alarm."""
    server, _ = start_gunicorn(
        "--preload", "--workers", "2",
        FLASK_LIFECYCLE_HEARTBEAT_INTERVAL_SECS="0.2", FLASK_LIFECYCLE_HEARTBEAT_TIMEOUT_SECS="0.5",
    )
    master, workers = preloaded_workers_detect_the_timeout(server)
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Traceback" not in output, output
    # The workers started the declared service; the master, which serves nothing, did not ...
    started = {int(m.group(1)) for m in server.matches(r"pid=(\d+) example INFO service_started")}
    assert master not in started and started >= workers, output
    # ... but never timed it out: no timeout, no move to ERROR.
    assert master not in {int(m.group(1)) for m in server.matches(MISSED)}, output
    alarms = rf"pid={master} example INFO (heartbeat_timeout|status_changed: .*new_status=(error|reconnecting))"
    assert server.matches(alarms) == [], output
    # atexit shut each worker's manager (and the master's) down: its service was stopped.
    stopped = {int(m.group(1)) for m in server.matches(r"pid=(\d+) example INFO service_stopped")}
    assert stopped >= workers


def test_the_django_example_under_preloaded_gunicorn(start_gunicorn):
    """The same with Django: the WSGI app is loaded in the master before the fork, and each worker
    starts the declared service (SERVICES) as it is forked; the workers watch and answer the
    endpoints from their own manager, the master raises no false alarm."""
    pytest.importorskip("django")
    token = "django-token"
    server, base = start_gunicorn(
        "--preload", "--workers", "2", app="project.wsgi", chdir=EXAMPLES / "django_project",
        LIFECYCLE_HEARTBEAT_INTERVAL_SECS="0.2", LIFECYCLE_HEARTBEAT_TIMEOUT_SECS="0.5",
        LIFECYCLE_HEARTBEAT_TOKEN=token,
    )
    master, workers = preloaded_workers_detect_the_timeout(server)
    status, body = request(f"{base}/lifecycle/healthz", token=token)
    assert status == 503 and body["failing"][0]["id"] == SERVICE, body
    assert request(f"{base}/lifecycle/services/{SERVICE}/heartbeat", "POST")[0] == 401
    assert request(f"{base}/lifecycle/services/{SERVICE}/heartbeat", "POST", token=token)[0] == 204
    # manage.py's status command asks the server, and starts and stops nothing of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    command = subprocess.run(
        [sys.executable, str(EXAMPLES / "django_project" / "manage.py"), "lifecycle_status",
         "--url", f"{base}/lifecycle", "--token", token],
        capture_output=True, text=True, env=env, timeout=DEADLINE, check=False,
    )
    assert command.returncode == 0, command
    row = command.stdout.splitlines()[1].split()
    # One worker's view: the one that got the heartbeat says running, the other still times out.
    assert row[:3] == [SERVICE, SERVICE, "1.0"] and row[3] in {"running", "reconnecting", "error"}, row
    assert "service" not in command.stderr, command.stderr
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Traceback" not in output, output
    assert master not in {int(m.group(1)) for m in server.matches(MISSED)}, output
    stopped = {int(m.group(1)) for m in server.matches(r"pid=(\d+) lifecycle INFO lifecycle: service .* stopped")}
    assert stopped >= workers


def test_the_extension_client_keeps_its_service_alive_and_recovers_it_after_being_killed(start_gunicorn, spawn):
    token = "s3cret-token"
    server, base = start_gunicorn(
        "--workers", "1",
        FLASK_LIFECYCLE_HEARTBEAT_INTERVAL_SECS="0.2", FLASK_LIFECYCLE_HEARTBEAT_TIMEOUT_SECS="1.0",
        FLASK_LIFECYCLE_HEARTBEAT_TOKEN=token,
    )
    lifecycle_url = f"{base}/lifecycle"
    assert request(f"{lifecycle_url}/healthz")[0] == 401  # the token guards every endpoint

    def start_client() -> Process:
        client = spawn([sys.executable, str(EXAMPLES / "extension_client.py"), "--url", lifecycle_url,
                        "--interval", "0.1"], {"LIFECYCLE_HEARTBEAT_TOKEN": token})
        client.wait_for(lambda lines: "heartbeat: 204" in lines)
        return client

    client = start_client()
    # Two full timeouts of heartbeats: the service must stay RUNNING all along.
    threading.Event().wait(2.0)
    status, body = request(f"{lifecycle_url}/services/{SERVICE}", token=token)
    assert status == 200 and body["status"] == "running" and body["seconds_since_heartbeat"] < 1.0, body
    assert server.matches(MISSED) == []

    client.stop(signal.SIGKILL)
    server.wait_for(lambda lines: server.matches(MISSED))
    status, body = eventually(lambda: (r := request(f"{lifecycle_url}/healthz", token=token))[0] == 503 and r)
    assert body["failing"] == [{"id": SERVICE, "name": SERVICE, "status": "error"}]

    # Without the token a heartbeat is refused and changes nothing.
    assert request(f"{lifecycle_url}/services/{SERVICE}/heartbeat", "POST")[0] == 401
    assert request(f"{lifecycle_url}/services/{SERVICE}/heartbeat", "POST", token="wrong")[0] == 403
    assert request(f"{lifecycle_url}/services/{SERVICE}", token=token)[1]["status"] == "error"

    client = start_client()
    server.wait_for(lambda lines: server.matches(r"service 'example-extension' .* is back \(heartbeat\)"))
    status, body = request(f"{lifecycle_url}/healthz", token=token)
    # With declared services the body also lists those pending (not registered yet) and stopped on purpose.
    assert status == 200 and (body["status"], body["services"], body["failing"], body["pending"]) == (
        "ok", 1, [], []), body
    client.stop()
    assert server.stop() == 0


def test_metrics_under_two_workers_add_up_per_pid(start_gunicorn):
    """Each worker answers /metrics for its own process, every sample labelled with its pid: the
    heartbeats the workers counted add up to the heartbeats the server accepted, and each worker
    reports its own copy of the service."""
    parser = pytest.importorskip("prometheus_client.parser")
    server, base = start_gunicorn("--workers", "2")
    workers = server.wait_for(
        lambda lines: (pids := set(re.findall(r"Booting worker with pid: (\d+)", "\n".join(lines))))
        and len(pids) == 2 and pids
    )
    # Both workers have started the example's declared service before their first request is answered.
    server.wait_for(lambda lines: len(server.matches(r"example INFO service_started")) >= 2)
    sent = 30
    for _ in range(sent):
        assert request(f"{base}/lifecycle/services/{SERVICE}/heartbeat", "POST")[0] == 204
    latest: dict[str, dict[tuple[str, str | None], float]] = {}
    for _ in range(400):  # each scrape reaches one worker; stop once both have answered
        with urllib.request.urlopen(f"{base}/lifecycle/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {(s.name, s.labels.get("status")): s.value
                   for family in parser.text_string_to_metric_families(text) for s in family.samples}
        pids = {s.labels["pid"] for family in parser.text_string_to_metric_families(text) for s in family.samples}
        assert len(pids) == 1
        latest[pids.pop()] = samples
        if set(latest) == workers:
            break
    assert set(latest) == workers, f"only {sorted(latest)} of {sorted(workers)} answered 400 scrapes"
    assert sum(s[("lifecycle_heartbeats_total", None)] for s in latest.values()) == sent
    assert all(s[("lifecycle_services", "running")] == 1 for s in latest.values())
    assert server.stop() == 0


# -- fleet mode: several workers share one registry on a real Redis-protocol server ---------------

FLEET_EXAMPLES = {
    # example: (WSGI app, directory, settings' environment prefix)
    "flask": ("flask_app:app", EXAMPLES, "FLASK_LIFECYCLE_"),
    "django": ("project.wsgi", EXAMPLES / "django_project", "LIFECYCLE_"),
}
FLEET_TIMEOUT = 2.0  # heartbeat timeout: the client beats every 0.1 s


@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
@pytest.mark.parametrize("example", sorted(FLEET_EXAMPLES))
def test_fleet_mode_three_workers_one_timeout_one_reconnect(start_gunicorn, spawn, redis_server, namespace, request,
                                                            example, preload):
    """Three workers on one namespace: the client's heartbeats land in whichever worker answers,
    none of them times the service out while it beats; killed, exactly one worker (the leader)
    logs one heartbeat_timeout; restarted, exactly one worker logs one reconnected."""
    servers.only_on_first_binary(request, "the gunicorn fleet scenarios test workers, not the server")
    if example == "django":
        pytest.importorskip("django")
    from lifecycle.redis import RedisRegistry

    app, chdir, prefix = FLEET_EXAMPLES[example]
    settings = {"REDIS_URL": redis_server.url, "NAMESPACE": namespace, "HEARTBEAT_INTERVAL_SECS": "0.5",
                "HEARTBEAT_TIMEOUT_SECS": str(FLEET_TIMEOUT)}
    server, base = start_gunicorn("--workers", "3", *(["--preload"] if preload else []), app=app, chdir=chdir,
                                  **{prefix + key: value for key, value in settings.items()})

    def start_client() -> Process:
        client = spawn([sys.executable, str(EXAMPLES / "extension_client.py"), "--url", f"{base}/lifecycle",
                        "--interval", "0.1"], {})
        client.wait_for(lambda lines: "heartbeat: 204" in lines)
        return client

    def logged(event: str) -> list[int]:
        return [int(m.group(1)) for m in server.matches(rf"pid=(\d+) example INFO {event}: service_id={SERVICE}")]

    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    try:
        # The client beats from the moment the first worker declares the service (it retries a 404
        # until then), not after all three have booted: on a loaded machine that can take longer
        # than the timeout, whose grace runs from the service's start.
        client = start_client()
        workers: set[int] = server.wait_for(
            lambda lines: (pids := set(re.findall(r"Booting worker with pid: (\d+)", "\n".join(lines))))
            and len(pids) == 3 and {int(p) for p in pids}
        )
        threading.Event().wait(10.0)  # ten seconds of heartbeats through all three workers
        assert logged("heartbeat_timeout") == [] and server.matches(MISSED) == [], "\n".join(server.lines)
        assert registry.silence(SERVICE)[0].value == "running"
        leader = registry.leader()
        assert leader is not None and int(leader.split(":")[-2]) in workers  # a worker acts, not the master

        client.stop(signal.SIGKILL)
        server.wait_for(lambda lines: logged("heartbeat_timeout"))
        eventually(lambda: registry.silence(SERVICE)[0].value in {"error", "reconnecting"})
        client = start_client()
        server.wait_for(lambda lines: logged("reconnected"))
        threading.Event().wait(FLEET_TIMEOUT)  # a full timeout more: time for any duplicate to show
        assert registry.silence(SERVICE)[0].value == "running"
        client.stop()
    finally:
        registry.client.close()
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Traceback" not in output, output
    assert len(logged("heartbeat_timeout")) == 1, output
    assert len(server.matches(MISSED)) == 1, output
    assert len(logged("reconnected")) == 1, output
    assert set(logged("heartbeat_timeout")) <= workers


# -- watching from boot: declared services, no request at all ---------------------------------------

BOOT_APPS = Path(__file__).resolve().parent / "boot_apps"
SILENT = {"name": "silent", "version": "1", "id": "silent"}
BOOT_MISSED = r"pid=(\d+) lifecycle WARNING lifecycle: service 'silent' \(silent\) missed its heartbeat deadline"


def boot_env(example: str, **settings: object) -> dict[str, str]:
    """The environment that gives the boot test app (`example`: flask or django) these LIFECYCLE settings."""
    settings = {"SERVICES": [SILENT], "AUTO_RECONNECT": False, **settings}
    if example == "flask":
        return {f"FLASK_LIFECYCLE_{key}": json.dumps(value) for key, value in settings.items()}
    return {"DJANGO_SETTINGS_MODULE": "boot_project.settings", "BOOT_LIFECYCLE": json.dumps(settings)}


def start_boot_app(start_gunicorn: Callable[..., tuple[Process, str]], example: str, preload: bool,
                   *args: str, **settings: object) -> tuple[Process, str, int, set[int]]:
    """Two gunicorn workers on the boot test app (`args`: more gunicorn flags): the server, its URL, the
    master's and the workers' pids."""
    if example == "django":
        pytest.importorskip("django")
    app = "flask_boot:app" if example == "flask" else "boot_project.wsgi"
    server, base = start_gunicorn("--workers", "2", *(["--preload"] if preload else []), *args, app=app,
                                  chdir=BOOT_APPS, **boot_env(example, **settings))
    master = int(server.wait_for(lambda lines: re.search(r"Listening at: \S+ \((\d+)\)", "\n".join(lines))).group(1))
    workers: set[int] = server.wait_for(
        lambda lines: (pids := set(re.findall(r"Booting worker with pid: (\d+)", "\n".join(lines))))
        and len(pids) >= 2 and {int(p) for p in pids}
    )
    return server, base, master, workers


def timed_out(server: Process) -> list[int]:
    return [int(m.group(1)) for m in server.matches(BOOT_MISSED)]


def startup_lines(server: Process) -> dict[int, list[str]]:
    """Per pid, the registries its startup lines name ("lifecycle: registry: ...")."""
    found: dict[int, list[str]] = {}
    for m in server.matches(r"pid=(\d+) lifecycle INFO lifecycle: registry: (.*)$"):
        found.setdefault(int(m.group(1)), []).append(m.group(2))
    return found


def assert_one_startup_line_each(server: Process, master: int, workers: set[int], preload: bool, registry: str
                                 ) -> None:
    """Every worker says once which registry it uses; the master too when it loaded the app (--preload)."""
    lines = startup_lines(server)
    expected = {pid: [registry] for pid in workers | ({master} if preload else set())}
    assert {pid: lines.get(pid) for pid in expected} == expected, "\n".join(server.lines)
    assert set(lines) <= workers | {master}, lines


@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
@pytest.mark.parametrize("example", ["flask", "django"])
def test_in_memory_every_worker_watches_its_declared_service_from_boot(start_gunicorn, example, preload):
    """No request is ever sent: each worker declares the service and times it out on its own
    (in memory each worker watches its own copy); the --preload master, which serves nothing,
    raises no alarm."""
    server, _, master, workers = start_boot_app(start_gunicorn, example, preload,
                                                HEARTBEAT_INTERVAL_SECS=0.2, HEARTBEAT_TIMEOUT_SECS=0.5)
    server.wait_for(lambda lines: set(timed_out(server)) >= workers)
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Traceback" not in output, output
    assert master not in timed_out(server), output
    assert sorted(timed_out(server)) == sorted(workers), output  # once each: no reconnect, so ERROR stays
    assert_one_startup_line_each(server, master, workers, preload, "in-memory (this process only)")


@pytest.mark.parametrize("example", ["flask", "django"])
def test_the_readmes_threaded_workers_watch_from_boot_too(start_gunicorn, example):
    """The README's gunicorn line runs gthread workers (--threads): their worker class starts the app
    from another frame than the sync worker's, and each worker still watches with no request."""
    server, _, master, workers = start_boot_app(start_gunicorn, example, False, "--threads", "4",
                                                HEARTBEAT_INTERVAL_SECS=0.2, HEARTBEAT_TIMEOUT_SECS=0.5)
    server.wait_for(lambda lines: set(timed_out(server)) >= workers)
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Using worker: gthread" in output and "Traceback" not in output, output
    assert sorted(timed_out(server)) == sorted(workers) and master not in timed_out(server), output


@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
@pytest.mark.parametrize("example", ["flask", "django"])
def test_fleet_the_silent_declared_service_times_out_exactly_once_with_no_request(
        start_gunicorn, redis_server, namespace, request, example, preload):
    """Fleet mode on a real server: both workers declare (one starts, the other joins), a worker
    leads, and the silent service times out once in the whole fleet, with no request ever sent."""
    servers.only_on_first_binary(request, "the gunicorn boot scenarios test workers, not the server")
    from lifecycle.redis import RedisRegistry

    timeout = 1.0
    server, _, master, workers = start_boot_app(
        start_gunicorn, example, preload, REDIS_URL=redis_server.url, NAMESPACE=namespace,
        HEARTBEAT_INTERVAL_SECS=0.5, HEARTBEAT_TIMEOUT_SECS=timeout)
    server.wait_for(lambda lines: timed_out(server))
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    try:
        eventually(lambda: registry.silence("silent")[0].value == "error")
        leader = registry.leader()
        assert leader is not None and int(leader.split(":")[-2]) in workers  # a worker leads, not the master
    finally:
        registry.client.close()
    threading.Event().wait(2 * timeout)  # two more timeouts: time for any duplicate to show
    assert server.stop() == 0
    output = "\n".join(server.lines)
    assert "Traceback" not in output, output
    assert len(timed_out(server)) == 1 and set(timed_out(server)) <= workers, output
    assert_one_startup_line_each(server, master, workers, preload,
                                 f"Redis at 127.0.0.1:{redis_server.port}, database 0, namespace {namespace!r} "
                                 "(fleet mode)")


@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
@pytest.mark.parametrize("example", ["flask", "django"])
def test_fleet_boot_with_the_registry_down_serves_503_then_registers_when_it_comes_up(
        start_gunicorn, redis_binary, tmp_path, request, example, preload):
    """The server is down while the workers boot (and while a --preload master loads the app):
    they boot all the same, /healthz answers 503 naming the declared service as pending, and once
    the server is up a retry registers it (logged) and /healthz turns 200."""
    servers.only_on_first_binary(request, "the gunicorn boot scenarios test workers, not the server")
    redis = servers.RedisServer(redis_binary, tmp_path / "redis")  # its port chosen, not started yet
    try:
        server, base, _, workers = start_boot_app(
            start_gunicorn, example, preload, REDIS_URL=redis.url, NAMESPACE="boot",
            HEARTBEAT_INTERVAL_SECS=5, HEARTBEAT_TIMEOUT_SECS=30)
        not_yet = r"pid=(\d+) lifecycle ERROR lifecycle: declared service 'silent' is not registered yet"
        server.wait_for(lambda lines: {int(m.group(1)) for m in server.matches(not_yet)} >= workers)
        status, body = request_json(f"{base}/lifecycle/healthz")
        assert status == 503 and body["pending"] == [{"id": "silent", "name": "silent"}], body
        assert body["status"] == "unavailable" and body["reason"] == "connection", body
        redis.start()
        server.wait_for(lambda lines: server.matches(r"lifecycle WARNING lifecycle: declared service 'silent' "
                                                     r"is registered again"))
        status, body = eventually(lambda: (r := request_json(f"{base}/lifecycle/healthz"))[0] == 200 and r)
        assert body["pending"] == [] and body["services"] == 1, body
        assert server.stop() == 0
        assert "Worker failed to boot" not in "\n".join(server.lines)
    finally:
        redis.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
@pytest.mark.parametrize("example", ["flask", "django"])
def test_fleet_a_killed_worker_and_a_flushed_registry_lose_nothing(start_gunicorn, redis_binary, tmp_path, request,
                                                                   example, preload):
    """SIGKILL the worker that started the declared service, then FLUSHALL: a surviving or new
    worker (under --preload forked again from the master that loaded the app) registers it again
    and logs so; the surviving worker logs the loss once, whoever registered it; /healthz is 200 again."""
    servers.only_on_first_binary(request, "the gunicorn boot scenarios test workers, not the server")
    import redis as redis_py

    redis = servers.RedisServer(redis_binary, tmp_path / "redis").start()
    client = redis_py.Redis.from_url(redis.url)
    try:
        server, base, _, workers = start_boot_app(
            start_gunicorn, example, preload, REDIS_URL=redis.url, NAMESPACE="boot",
            HEARTBEAT_INTERVAL_SECS=5, HEARTBEAT_TIMEOUT_SECS=30)
        eventually(lambda: request_json(f"{base}/lifecycle/healthz")[0] == 200)
        # The worker that started it; the other one joined (it logs so) or found it registered.
        joined = {int(m.group(1)) for m in server.matches(r"pid=(\d+) lifecycle INFO lifecycle: service 'silent' "
                                                          r"joined")}
        starter = next(iter(workers - joined)) if workers - joined else next(iter(workers))
        os.kill(starter, signal.SIGKILL)
        # The new worker has booted and declared (the service is still there: it joins) before the data goes.
        server.wait_for(lambda lines: {int(m.group(1)) for m in server.matches(
            r"pid=(\d+) lifecycle INFO lifecycle: service 'silent' joined")} - workers)
        client.flushall()
        restored = r"pid=(\d+) lifecycle WARNING lifecycle: the registry lost its data; 1 service\(s\) .*'silent'"
        server.wait_for(lambda lines: server.matches(restored))
        assert starter not in {int(m.group(1)) for m in server.matches(restored)}
        lost = r"pid=(\d+) lifecycle WARNING lifecycle: the registry lost its data; "
        (survivor,) = workers - {starter}  # it held the old generation: it sees the loss, whoever restored
        server.wait_for(lambda lines: survivor in {int(m.group(1)) for m in server.matches(lost)})
        _, body = eventually(lambda: (r := request_json(f"{base}/lifecycle/healthz"))[0] == 200 and r)
        assert body["services"] == 1 and body["pending"] == [], body
        assert server.stop() == 0
        seen = [int(m.group(1)) for m in server.matches(lost)]
        assert len(seen) == len(set(seen)), "\n".join(server.lines)  # once per process
    finally:
        client.close()
        redis.stop()


def request_json(url: str) -> tuple[int, Any]:
    """GET `url`: its status and JSON body, or (0, None) when the server refuses the connection."""
    try:
        return request(url)
    except urllib.error.URLError:
        return 0, None
