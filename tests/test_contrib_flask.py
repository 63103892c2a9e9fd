"""`lifecycle.contrib.flask` with Flask's test client: config, endpoints, access control, shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import freezegun
import pytest

pytest.importorskip("flask")
from flask import Flask, Request

import lifecycle
from lifecycle import ExtensionService, LifecycleManager, ServiceStatus, TransportConfig
from lifecycle.contrib import ConfigurationError, bearer_token_valid
from lifecycle.contrib._process import _at_exit
from lifecycle.contrib._status import render_table
from lifecycle.contrib.flask import Lifecycle, cli
from lifecycle.testing import EventRecorder

MANUAL = {"LIFECYCLE_AUTOSTART": False, "LIFECYCLE_HEARTBEAT_INTERVAL_SECS": 1, "LIFECYCLE_HEARTBEAT_TIMEOUT_SECS": 3}


@pytest.fixture
def make_app() -> Iterator[Any]:
    """Build Flask apps with lifecycle in manual mode; shut their managers down after the test."""
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = Flask(f"app{len(apps)}")
        app.config.update({**MANUAL, **config})
        Lifecycle(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["lifecycle"].shutdown()


def manager_of(app: Flask) -> LifecycleManager:
    manager: LifecycleManager = app.extensions["lifecycle"]
    return manager


def start(app: Flask, name: str = "svc", **kwargs: Any) -> str:
    return manager_of(app).start_service(ExtensionService(name, "1.0", **kwargs))


# -- configuration ------------------------------------------------------------------------------


def test_config_keys_map_onto_the_manager_config(make_app):
    app = make_app(LIFECYCLE_HEARTBEAT_INTERVAL_SECS=2, LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=7,
                   LIFECYCLE_MAX_RECONNECT_ATTEMPTS=9, LIFECYCLE_RECONNECT_DELAY_MS=50,
                   LIFECYCLE_MAX_RECONNECT_DELAY_MS=500, LIFECYCLE_RECONNECT_BACKOFF_MULTIPLIER=3,
                   LIFECYCLE_AUTO_RECONNECT=False, LIFECYCLE_JITTER=0.5,
                   LIFECYCLE_MAX_RESTARTS=4, LIFECYCLE_RESTART_WINDOW_SECS=30)
    assert manager_of(app).config.as_dict() == {
        "heartbeat_interval_secs": 2, "heartbeat_timeout_secs": 7, "max_reconnect_attempts": 9,
        "reconnect_delay_ms": 50, "max_reconnect_delay_ms": 500, "reconnect_backoff_multiplier": 3,
        "auto_reconnect": False, "jitter": 0.5, "max_restarts": 4, "restart_window_secs": 30,
        "detector": "fixed", "phi_threshold": 8.0, "phi_max_sample_size": 1000, "phi_min_std_deviation_secs": 0.1,
        "phi_acceptable_pause_secs": 3.0,
    }


def test_the_app_factory_pattern_gives_each_app_its_own_manager():
    extension = Lifecycle()
    apps = [Flask("one"), Flask("two")]
    for app in apps:
        app.config.update(MANUAL)
        assert extension.init_app(app) is app.extensions["lifecycle"]
    try:
        first, second = (manager_of(app) for app in apps)
        assert first is not second
        with apps[1].app_context():
            assert extension.manager is second
        assert extension.get_manager(apps[0]) is first
    finally:
        for app in apps:
            manager_of(app).shutdown()


def test_manager_outside_an_initialised_app_is_a_clear_error():
    extension = Lifecycle()
    with Flask("bare").app_context(), pytest.raises(RuntimeError, match="not initialised"):
        _ = extension.manager


def test_init_app_twice_is_refused(make_app):
    app = make_app()
    with pytest.raises(RuntimeError, match="already initialised"):
        Lifecycle(app)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("LIFECYCLE_HEARTBEAT_TIMEOUT", 3, "did you mean LIFECYCLE_HEARTBEAT_TIMEOUT_SECS"),
        ("LIFECYCLE_JITTER", 2, "jitter must be within"),
        ("LIFECYCLE_JITTER", "0.1", "jitter must be an int or float, not str"),
        ("LIFECYCLE_HEARTBEAT_TIMEOUT_SECS", 0.5, "must be >= heartbeat_interval_secs"),
        ("LIFECYCLE_MAX_RECONNECT_ATTEMPTS", -1, "max_reconnect_attempts must be >= 0"),
        ("LIFECYCLE_AUTO_RECONNECT", "yes", "auto_reconnect must be a bool"),
        ("LIFECYCLE_AUTOSTART", 1, "must be a bool"),
        ("LIFECYCLE_SHUTDOWN_TIMEOUT", -1, "must be >= 0"),
        ("LIFECYCLE_SHUTDOWN_TIMEOUT", "5", "must be an int or float"),
        ("LIFECYCLE_HEARTBEAT_TOKEN", "", "must be a non-empty str"),
        ("LIFECYCLE_HEARTBEAT_TOKEN", 1234, "must be a non-empty str"),
        ("LIFECYCLE_HEARTBEAT_TOKEN", " s3cret", "may hold only letters"),
        ("LIFECYCLE_HEARTBEAT_TOKEN", "s3cret\n", "may hold only letters"),
        ("LIFECYCLE_HEARTBEAT_TOKEN", "s\u00e9cret", "may hold only letters"),
        ("LIFECYCLE_AUTH", 5, "must be a callable"),
        ("LIFECYCLE_AUTH", "nodots", "not a dotted path"),
        ("LIFECYCLE_AUTH", "no.such.module.check", "cannot import"),
        ("LIFECYCLE_CONNECTOR", "lifecycle.NoSuchConnector", "cannot import"),
        ("LIFECYCLE_CONNECTOR", 42, "connector must have a connect(service) method or be callable"),
        ("LIFECYCLE_ENDPOINTS", "on", "must be a bool"),
        ("LIFECYCLE_URL_PREFIX", "lifecycle", "must be a path below the root"),
        ("LIFECYCLE_URL_PREFIX", "/", "must be a path below the root"),
        ("LIFECYCLE_URL_PREFIX", 5, "must be a str"),
    ],
)
def test_bad_config_is_a_typed_error_naming_the_key_and_leaves_the_app_untouched(key, value, message):
    app = Flask("bad")
    app.config.update(MANUAL)
    app.config[key] = value
    threads = set(threading.enumerate())
    managers = len(_at_exit)
    with pytest.raises(ConfigurationError) as caught:
        Lifecycle(app)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ") and message in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, lifecycle.LifecycleError)
    assert "lifecycle" not in app.extensions and "lifecycle" not in app.blueprints
    assert len(_at_exit) == managers and set(threading.enumerate()) == threads


def test_a_blueprint_name_clash_leaves_no_manager_behind():
    from flask import Blueprint

    app = Flask("clash")
    app.config.update(MANUAL)
    app.register_blueprint(Blueprint("lifecycle", __name__))
    managers = dict(_at_exit)
    with pytest.raises(ValueError, match="already registered"):
        Lifecycle(app)
    assert "lifecycle" not in app.extensions
    assert all(m.closed for m in _at_exit if m not in managers)


def test_auth_and_token_together_are_refused():
    app = Flask("both")
    app.config.update(LIFECYCLE_AUTH=lambda request: True, LIFECYCLE_HEARTBEAT_TOKEN="t")
    with pytest.raises(ConfigurationError, match="either LIFECYCLE_AUTH or LIFECYCLE_HEARTBEAT_TOKEN"):
        Lifecycle(app)


def test_connector_from_config_or_constructor_is_used(make_app):
    connected: list[str] = []
    app = make_app(LIFECYCLE_CONNECTOR=lambda service: connected.append(service.name))
    start(app, "a")
    other = Flask("ctor")
    other.config.update(MANUAL)
    Lifecycle(other, connector=lambda service: connected.append("ctor:" + service.name))
    try:
        start(other, "b")
    finally:
        manager_of(other).shutdown()
    assert connected == ["a", "ctor:b"]


def test_endpoints_can_be_turned_off_or_moved(make_app):
    off = make_app(LIFECYCLE_ENDPOINTS=False)
    assert "lifecycle" not in off.blueprints
    assert off.test_client().get("/lifecycle/healthz").status_code == 404
    moved = make_app(LIFECYCLE_URL_PREFIX="/ops/lifecycle/")
    client = moved.test_client()
    assert client.get("/ops/lifecycle/healthz").status_code == 200
    assert client.get("/lifecycle/healthz").status_code == 404


def test_no_authorization_is_warned_about(make_app, caplog):
    with caplog.at_level("WARNING", logger="lifecycle"):
        make_app()
        make_app(LIFECYCLE_HEARTBEAT_TOKEN="t")
    warnings = [r.getMessage() for r in caplog.records if "no authorization" in r.getMessage()]
    assert len(warnings) == 1 and "/lifecycle" in warnings[0]


# -- endpoints ----------------------------------------------------------------------------------


def test_heartbeat_is_204_and_records_the_beat(make_app):
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app()
        sid = start(app)
        frozen.tick(2)
        response = app.test_client().post(f"/lifecycle/services/{sid}/heartbeat")
        assert response.status_code == 204 and response.data == b""
        body = app.test_client().get(f"/lifecycle/services/{sid}").get_json()
        assert body["seconds_since_heartbeat"] == 0.0


def test_heartbeat_revives_a_timed_out_service(make_app):
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app(LIFECYCLE_AUTO_RECONNECT=False)
        sid = start(app)
        frozen.tick(3)
        manager_of(app).run_pending()
        assert manager_of(app).get_status(sid) is ServiceStatus.ERROR
        assert app.test_client().post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
        assert manager_of(app).get_status(sid) is ServiceStatus.RUNNING


@pytest.mark.parametrize("bad_id", ["nope", "x" * 257, "a/b", "%00", " "])
def test_unknown_or_malformed_ids_are_json_404s(make_app, bad_id):
    app = make_app()
    start(app)
    client = app.test_client()
    for response in (client.post(f"/lifecycle/services/{bad_id}/heartbeat"),
                     client.get(f"/lifecycle/services/{bad_id}")):
        assert response.status_code == 404
        assert response.is_json and response.get_json()["error"] == "not_found"


def test_a_long_id_is_quoted_shortened_in_the_error(make_app):
    response = make_app().test_client().get("/lifecycle/services/" + "y" * 5000)
    assert response.status_code == 404 and len(response.get_json()["message"]) < 200


def test_ids_with_slashes_work(make_app):
    app = make_app()
    sid = start(app, id="team/ext")
    client = app.test_client()
    assert client.post("/lifecycle/services/team/ext/heartbeat").status_code == 204
    assert client.get("/lifecycle/services/team/ext").get_json()["id"] == sid


def test_heartbeat_for_a_stopping_service_is_409_and_after_shutdown_503(make_app):
    release = threading.Event()
    app = make_app(LIFECYCLE_CONNECTOR=type("C", (), {
        "connect": lambda self, s: None, "disconnect": lambda self, s: release.wait(5)})())
    sid = start(app)
    manager = manager_of(app)
    stopping = threading.Event()

    def on_status(sender: object, event: Any, **kw: Any) -> None:
        if event.new_status is ServiceStatus.STOPPING:
            stopping.set()

    with lifecycle.connect(on_status, "status_changed", sender=manager):
        stopper = threading.Thread(target=manager.stop_service, args=(sid,))
        stopper.start()
        try:
            assert stopping.wait(5)
            response = app.test_client().post(f"/lifecycle/services/{sid}/heartbeat")
            assert response.status_code == 409
            assert response.get_json()["error"] == "conflict" and "is stopping" in response.get_json()["message"]
        finally:
            release.set()
            stopper.join(5)
    manager.shutdown()
    response = app.test_client().post(f"/lifecycle/services/{sid}/heartbeat")
    assert response.status_code == 503 and response.get_json()["error"] == "closed"
    health = app.test_client().get("/lifecycle/healthz")
    assert health.status_code == 503 and health.get_json()["status"] == "closed"


def test_list_and_get_describe_each_service(make_app):
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app()
        a = start(app, "a")
        frozen.tick(1.5)
        b = start(app, "b")
        client = app.test_client()
        listed = client.get("/lifecycle/services").get_json()
        assert listed == [
            {"id": a, "name": "a", "version": "1.0", "status": "running", "seconds_since_heartbeat": 1.5},
            {"id": b, "name": "b", "version": "1.0", "status": "running", "seconds_since_heartbeat": 0.0},
        ]
        assert client.get(f"/lifecycle/services/{b}").get_json() == listed[1]


def test_healthz_is_200_when_all_run_and_503_naming_the_others(make_app):
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app(LIFECYCLE_AUTO_RECONNECT=False)
        client = app.test_client()
        assert client.get("/lifecycle/healthz").get_json() == {"status": "ok", "services": 0, "failing": []}
        quiet = start(app, "quiet")
        frozen.tick(2)
        busy = start(app, "busy")
        assert client.get("/lifecycle/healthz").status_code == 200
        frozen.tick(1)
        manager_of(app).run_pending()
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "failing", "services": 2,
                                       "failing": [{"id": quiet, "name": "quiet", "status": "error"}]}
        assert busy != quiet


def test_healthz_lists_every_failing_service_grouped_by_status(make_app):
    with freezegun.freeze_time("2026-01-01") as frozen:
        app = make_app(LIFECYCLE_MAX_RECONNECT_ATTEMPTS=3, LIFECYCLE_RECONNECT_DELAY_MS=10_000,
                       LIFECYCLE_CONNECTOR=lambda service: None)
        manager = manager_of(app)
        ids = {name: start(app, name) for name in ("a", "b", "c", "d", "e")}
        ids["f"] = start(app, "f", transport=TransportConfig(auto_reconnect=False))
        manager.handle_error(ids["b"], "boom")  # RECONNECTING, retry in 10 s
        frozen.tick(2)
        for name in "acef":
            manager.handle_heartbeat(ids[name])
        frozen.tick(1)
        manager.run_pending()  # d timed out: RECONNECTING
        manager.handle_error(ids["a"], "boom")
        manager.handle_error(ids["f"], "boom")  # no auto-reconnect: ERROR
        body = app.test_client().get("/lifecycle/healthz").get_json()
    assert body == {"status": "failing", "services": 6, "failing": [
        {"id": ids["a"], "name": "a", "status": "reconnecting"},
        {"id": ids["b"], "name": "b", "status": "reconnecting"},
        {"id": ids["d"], "name": "d", "status": "reconnecting"},
        {"id": ids["f"], "name": "f", "status": "error"},
    ]}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/lifecycle/services/x/heartbeat", "POST, OPTIONS"),
        ("DELETE", "/lifecycle/services", "GET, HEAD, OPTIONS"),
        ("POST", "/lifecycle/healthz", "GET, HEAD, OPTIONS"),
        ("PUT", "/lifecycle/services/x", "GET, HEAD, OPTIONS"),
        ("PROPFIND", "/lifecycle/healthz", "GET, HEAD, OPTIONS"),
        ("BREW", "/lifecycle/services/x/heartbeat", "POST, OPTIONS"),
    ],
)
def test_wrong_methods_are_json_405s_with_allow(make_app, method, path, allowed):
    response = make_app().test_client().open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.get_json()["error"] == "method_not_allowed"


def test_options_lists_the_methods(make_app):
    response = make_app().test_client().options("/lifecycle/services/x/heartbeat")
    assert response.status_code == 204 and response.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("path", ["/lifecycle", "/lifecycle/nothing", "/lifecycle/servicesX", "/lifecycle/status.txt"])
def test_unknown_paths_under_the_prefix_are_json_404s(make_app, path):
    response = make_app().test_client().post(path)
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_the_host_apps_own_errors_are_left_alone(make_app):
    app = make_app()

    @app.get("/hello")
    def hello() -> str:
        return "hi"

    client = app.test_client()
    assert client.get("/hello").data == b"hi"
    assert not client.get("/missing").is_json
    assert not client.delete("/hello").is_json


# -- access control -----------------------------------------------------------------------------


def timed_out(app: Flask) -> str:
    """A service that timed out and (no auto-reconnect) sits in ERROR."""
    with freezegun.freeze_time("2026-01-01") as frozen:
        sid = start(app)
        frozen.tick(3)
        manager_of(app).run_pending()
    assert manager_of(app).get_status(sid) is ServiceStatus.ERROR
    return sid


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": "Basic czNjcmV0"}, 403),
        ({"Authorization": "Bearer s3cret-but-longer"}, 403),
        ({"Authorization": "Bearer s3cre"}, 403),
        ({"Authorization": "Bearer \u00e9t\u00e9"}, 403),
        ({"Authorization": "s3cret"}, 400),
        ({"Authorization": "Bearer"}, 400),
        ({"Authorization": "Bearer   "}, 400),
    ],
)
def test_a_refused_heartbeat_is_400_401_or_403_and_changes_nothing(make_app, headers, status):
    app = make_app(LIFECYCLE_HEARTBEAT_TOKEN="s3cret", LIFECYCLE_AUTO_RECONNECT=False)
    sid = timed_out(app)
    events: list[Any] = []
    with lifecycle.connect(lambda sender, event, **kw: events.append(event), sender=manager_of(app)):
        response = app.test_client().post(f"/lifecycle/services/{sid}/heartbeat", headers=headers)
    assert response.status_code == status and response.is_json
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lifecycle"'
    if status == 400:
        assert response.get_json()["error"] == "malformed_header"
        assert response.get_json()["message"] == "the Authorization header must be 'Bearer <token>'"
    if headers.get("Authorization", "").startswith("Basic"):
        assert "scheme must be Bearer, not 'Basic'" in response.get_json()["message"]
    assert manager_of(app).get_status(sid) is ServiceStatus.ERROR
    assert events == []


def test_the_right_token_is_accepted_on_every_endpoint(make_app):
    app = make_app(LIFECYCLE_HEARTBEAT_TOKEN="s3cret", LIFECYCLE_AUTO_RECONNECT=False)
    sid = timed_out(app)
    client = app.test_client()
    auth = {"Authorization": "bearer  s3cret "}
    assert client.get("/lifecycle/services").status_code == 401
    assert client.get("/lifecycle/healthz", headers=auth).status_code == 503
    assert client.post(f"/lifecycle/services/{sid}/heartbeat", headers=auth).status_code == 204
    assert client.get(f"/lifecycle/services/{sid}", headers=auth).get_json()["status"] == "running"


def only_from_localhost(request: Request) -> bool:
    return request.remote_addr == "127.0.0.1"


@pytest.mark.parametrize("hook", [only_from_localhost, f"{__name__}.only_from_localhost"])
def test_an_auth_hook_gets_the_request_and_a_falsy_answer_is_403(make_app, hook):
    app = make_app(LIFECYCLE_AUTH=hook)
    sid = start(app)
    client = app.test_client()
    assert client.post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
    refused = client.post(f"/lifecycle/services/{sid}/heartbeat", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert refused.status_code == 403 and refused.get_json()["error"] == "forbidden"


def test_an_auth_hook_that_raises_refuses_and_is_logged(make_app, caplog):
    def broken(request: Request) -> bool:
        raise KeyError("oops")

    app = make_app(LIFECYCLE_AUTH=broken)
    sid = start(app)
    with caplog.at_level("ERROR", logger="lifecycle"):
        response = app.test_client().post(f"/lifecycle/services/{sid}/heartbeat")
    assert response.status_code == 403
    assert any("authorization hook raised" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("header", "valid"),
    [(None, False), ("", False), ("Bearer t0k", True), ("bearer t0k", True), ("Bearer  t0k ", True),
     ("Bearer t0k2", False), ("Token t0k", False), ("Bearer", False), ("Bearer \udcff", False)],
)
def test_bearer_token_valid(header, valid):
    assert bearer_token_valid(header, "t0k") is valid


# -- shutdown at exit ---------------------------------------------------------------------------

EXIT_SCRIPT = r"""
import threading
from flask import Flask
import lifecycle
from lifecycle import ExtensionService
from lifecycle.contrib.flask import Lifecycle, cli
from lifecycle.testing import EventRecorder

class Stuck:
    def connect(self, service): pass
    def disconnect(self, service):
        threading.Event().wait()  # never returns

app = Flask("exit")
app.config.update(LIFECYCLE_SHUTDOWN_TIMEOUT=0.5)
ext = Lifecycle(app, connector=Stuck())
manager = app.extensions["lifecycle"]
manager.start_service(ExtensionService("fine", "1"))
manager.start_service(ExtensionService("stuck", "1"))
keep = lifecycle.connect(lambda sender, event, **kw: print(event.signal_name, flush=True), "status_changed",
                         sender=manager)
print("running", manager.armed_timers(), flush=True)
"""


def test_the_manager_is_shut_down_at_exit_without_hanging_it():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[:2] == ["running", "2"]
    # Shutdown ran at exit: both services moved to STOPPING; the stuck disconnect was abandoned.
    assert lines.count("status_changed") >= 2, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 30  # generous: the point is that exit does not wait forever for the stuck disconnect


# -- status commands ----------------------------------------------------------------------------


def test_flask_lifecycle_status_without_url_says_so_exits_non_zero_and_never_loads_the_app():
    """A real `flask` command line: the status command is a plugin, so the app (whose factory starts
    a service and logs service_started) is not even imported; without --url it refuses with a reason."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "LIFECYCLE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "examples/flask_app", "lifecycle", "status"],
        capture_output=True, text=True, cwd=root, env=env, timeout=60, check=False,
    )
    assert result.returncode == 2, result
    assert "--url is required: this command's own process serves nothing" in result.stderr
    assert "service_started" not in result.stderr + result.stdout
    refused = Flask("cli").test_cli_runner().invoke(cli, ["status", "--token", "t"])
    assert refused.exit_code == 2 and "--url is required" in refused.output


def test_python_m_lifecycle_status_without_url_says_so(capsys):
    from lifecycle.__main__ import main

    assert main(["status"]) == 2
    assert "--url is required" in capsys.readouterr().err


@pytest.fixture
def served(make_app) -> Iterator[tuple[Flask, str]]:
    """A token-protected app served over real HTTP on 127.0.0.1 (port from the OS); yields it and its URL."""
    from werkzeug.serving import make_server

    app = make_app(LIFECYCLE_HEARTBEAT_TOKEN="s3cret")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/lifecycle"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()


def test_status_over_http_from_flask_and_from_python_m_lifecycle(served, capsys):
    app, url = served
    start(app, "remote", id="remote-1")
    other = Flask("cli")  # the command runs in another app: only --url can see the served one
    other.config.update(MANUAL)
    Lifecycle(other)
    try:
        result = other.test_cli_runner().invoke(args=["lifecycle", "status", "--url", url, "--token", "s3cret"])
        assert result.exit_code == 0 and result.output.splitlines()[1].split()[:4] == [
            "remote-1", "remote", "1.0", "running"]
        refused = other.test_cli_runner().invoke(args=["lifecycle", "status", "--url", url])
        assert refused.exit_code == 1 and "refused the request with 401" in refused.output
    finally:
        manager_of(other).shutdown()

    from lifecycle.__main__ import main

    assert main(["status", "--url", url, "--token", "s3cret", "--json"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["remote-1"]
    assert main(["status", "--url", url, "--token", "wrong"]) == 1
    assert "refused the request with 403 FORBIDDEN; check --token" in capsys.readouterr().err
    assert main(["status", "--url", url.removesuffix("/lifecycle") + "/elsewhere", "--token", "s3cret"]) == 1
    assert "answered 404" in capsys.readouterr().err


# -- watching starts where requests are served ---------------------------------------------------


@pytest.fixture
def not_serving_yet(monkeypatch):
    """This process as it is before its first request (the suite's earlier tests served some)."""
    from lifecycle.contrib import _process

    monkeypatch.setattr(_process, "_serving", False)
    monkeypatch.setattr(_process, "_waiting", type(_process._waiting)())


FAST = {"LIFECYCLE_AUTOSTART": True, "LIFECYCLE_HEARTBEAT_INTERVAL_SECS": 0.05,
        "LIFECYCLE_HEARTBEAT_TIMEOUT_SECS": 0.2, "LIFECYCLE_AUTO_RECONNECT": False}


@pytest.mark.threaded
@pytest.mark.parametrize("how", ["request", "start_watching"])
def test_a_process_that_has_served_nothing_raises_no_timeout_until_it_serves(make_app, not_serving_yet, how):
    """The gunicorn --preload master's case, in one process: the app is loaded and a service started,
    but no request has arrived, so no heartbeat could have; the deadline passes unwatched. The first
    request (or an explicit start_watching()) starts the watching, and the overdue deadline fires."""
    app = make_app(**FAST)
    recorder = EventRecorder().record(manager_of(app))
    try:
        sid = start(app, id="quiet")
        threading.Event().wait(0.6)  # three timeouts of silence
        assert "service_started" in recorder.names() and "heartbeat_timeout" not in recorder.names()
        assert manager_of(app).get_status(sid) is ServiceStatus.RUNNING
        if how == "request":
            assert app.test_client().get("/").status_code == 404  # any request of the app's own
        else:
            lifecycle.contrib.start_watching()
        assert recorder.wait_for(lambda events: "heartbeat_timeout" in [e.signal_name for e in events])
        assert manager_of(app).get_status(sid) is ServiceStatus.ERROR
        # From now on the process serves: a manager built later watches at once.
        later = make_app(**FAST)
        later_recorder = EventRecorder().record(manager_of(later))
        start(later, id="later")
        assert later_recorder.wait_for(lambda events: "heartbeat_timeout" in [e.signal_name for e in events])
        later_recorder.close()
    finally:
        recorder.close()


def test_a_manual_mode_manager_is_not_held(make_app, not_serving_yet):
    from lifecycle.contrib import _process

    app = make_app()
    assert manager_of(app) not in _process._waiting
    with freezegun.freeze_time("2026-01-01") as frozen:
        sid = start(app)
        frozen.tick(3)
        assert manager_of(app).run_pending() >= 1
    assert manager_of(app).get_status(sid) is ServiceStatus.RECONNECTING


# -- restarts and phi in the endpoints and the status table (issue "Operability") -----------------


def test_restarts_and_phi_appear_in_the_endpoints_and_the_table(frozen_lifecycle, make_app):
    app = make_app(LIFECYCLE_MAX_RESTARTS=3, LIFECYCLE_RESTART_WINDOW_SECS=60, LIFECYCLE_DETECTOR="phi")
    manager = app.extensions["lifecycle"]
    sid = manager.start_service(ExtensionService("svc", "1"))
    manager.handle_error(sid, "down")  # one restart
    manager.handle_heartbeat(sid)
    frozen_lifecycle.freezer.tick(2.9)  # silent long enough for phi to rise (Akka: 3 s acceptable pause)
    client = app.test_client()
    rows = client.get("/lifecycle/services").get_json()
    assert rows[0]["restarts"] == 1 == manager.restarts(sid)
    assert rows[0]["phi"] == round(manager.phi(sid), 2) and rows[0]["phi"] > 0
    assert client.get(f"/lifecycle/services/{sid}").get_json()["restarts"] == 1
    status = client.get("/lifecycle/status").get_json()
    assert status["services"][0]["restarts"] == 1 and "phi" in status["services"][0]
    header, row = render_table(rows).splitlines()
    assert header.split()[-2:] == ["RESTARTS", "PHI"]
    assert row.split()[-2:] == ["1", f"{rows[0]['phi']:.1f}"]


def test_without_them_the_rows_and_the_table_are_as_before(make_app):
    app = make_app()
    manager = app.extensions["lifecycle"]
    manager.start_service(ExtensionService("svc", "1"))
    rows = app.test_client().get("/lifecycle/services").get_json()
    assert "restarts" not in rows[0] and "phi" not in rows[0]
    assert "RESTARTS" not in render_table(rows) and "PHI" not in render_table(rows)
