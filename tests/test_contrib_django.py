"""The Django app against a real Django: endpoints, checks, the accessor, settings changes, the command."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django_setup  # noqa: F401  (configures Django before the imports below)
import freezegun
import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import Client, RequestFactory, override_settings

import lifecycle.contrib.django as integration
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.contrib import _process
from lifecycle.contrib._settings import ConfigurationError
from lifecycle.contrib.django import get_manager, views

TOKEN = "s3cret-token"
WAIT = 10.0  # seconds any Event wait may take before the test fails instead of hanging


def allow_header(request: Any) -> bool:
    """An AUTH hook for the dotted-path setting: allows requests carrying X-Allow: yes."""
    return bool(request.headers.get("X-Allow") == "yes")


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Every test starts and ends without a cached manager (a leftover one is shut down)."""
    integration._reset()
    yield
    integration._reset()


@pytest.fixture
def configure() -> Iterator[Callable[..., LifecycleManager]]:
    """`configure(**LIFECYCLE)` overrides the setting (manual mode unless given) and returns the new manager."""
    overrides: list[override_settings] = []

    def apply(**values: Any) -> LifecycleManager:
        values.setdefault("AUTOSTART", False)
        override = override_settings(LIFECYCLE=values)
        override.enable()
        overrides.append(override)
        return get_manager()

    yield apply
    for override in reversed(overrides):
        override.disable()


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


def start(manager: LifecycleManager, name: str = "ext", **kwargs: Any) -> str:
    return str(manager.start_service(ExtensionService(name, "1.0", **kwargs)))


def body(response: Any) -> Any:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


def lifecycle_ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return sorted(m.id for m in run_checks(tags=["lifecycle"]) if m.id.startswith("lifecycle."))


# -- endpoints ---------------------------------------------------------------------------------


def test_heartbeat_204_and_unknown_404(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure()
    id = start(manager)
    response = client.post(f"/lifecycle/services/{id}/heartbeat")
    assert response.status_code == 204
    assert response.content == b""
    response = client.post("/lifecycle/services/nope/heartbeat")
    assert response.status_code == 404
    assert body(response) == {"error": "not_found", "message": "no service with id 'nope'"}


def test_too_long_ids_are_404(configure: Callable[..., LifecycleManager], client: Client) -> None:
    configure()
    long_id = "x" * 257
    responses = (client.post(f"/lifecycle/services/{long_id}/heartbeat"), client.get(f"/lifecycle/services/{long_id}"))
    for response in responses:
        assert response.status_code == 404
        assert body(response)["error"] == "not_found"
        assert "..." in body(response)["message"]  # the id is quoted shortened


def test_ids_may_contain_slashes_and_heartbeat_wins(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure()
    start(manager, "tool", id="team/tool")
    start(manager, "odd", id="odd/heartbeat")
    assert client.get("/lifecycle/services/team/tool").status_code == 200
    assert body(client.get("/lifecycle/services/team%2Ftool"))["id"] == "team/tool"
    assert client.post("/lifecycle/services/team/tool/heartbeat").status_code == 204
    # The heartbeat pattern wins: the id here is "odd/heartbeat", posted to its heartbeat endpoint.
    assert client.post("/lifecycle/services/odd/heartbeat/heartbeat").status_code == 204
    assert client.get("/lifecycle/services/odd/heartbeat").status_code == 405


def test_heartbeat_409_while_stopping(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure()
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        def connect(self, service: ExtensionService) -> None:
            pass

        def disconnect(self, service: ExtensionService) -> None:
            entered.set()
            release.wait(WAIT)

    id = str(manager.start_service(ExtensionService("slow", "1.0"), connector=Blocking()))
    stopper = threading.Thread(target=manager.stop_service, args=(id,))
    stopper.start()
    try:
        assert entered.wait(WAIT)
        response = client.post(f"/lifecycle/services/{id}/heartbeat")
        assert response.status_code == 409
        assert body(response)["error"] == "conflict"
    finally:
        release.set()
        stopper.join(WAIT)
    assert not stopper.is_alive()
    assert client.post(f"/lifecycle/services/{id}/heartbeat").status_code == 404


def test_after_shutdown_heartbeat_and_healthz_are_503(
    configure: Callable[..., LifecycleManager], client: Client
) -> None:
    manager = configure()
    id = start(manager)
    manager.shutdown()
    response = client.post(f"/lifecycle/services/{id}/heartbeat")
    assert response.status_code == 503
    assert body(response)["error"] == "closed"
    response = client.get("/lifecycle/healthz")
    assert response.status_code == 503
    assert body(response) == {"status": "closed", "failing": []}


def test_list_and_get_services(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure()
    first, second = start(manager, "one"), start(manager, "two")
    response = client.get("/lifecycle/services")
    assert response.status_code == 200
    listed = body(response)
    assert [s["id"] for s in listed] == [first, second]
    assert listed[0]["name"] == "one"
    assert listed[0]["version"] == "1.0"
    assert listed[0]["status"] == "running"
    assert isinstance(listed[0]["seconds_since_heartbeat"], float)
    response = client.get(f"/lifecycle/services/{second}")
    assert response.status_code == 200
    assert body(response)["name"] == "two"
    assert client.get("/lifecycle/services/missing").status_code == 404
    # HEAD: the GET headers, no body. The view is called directly: the test client strips HEAD bodies itself.
    head = views.list_services(RequestFactory().head("/lifecycle/services"))
    get = views.list_services(RequestFactory().get("/lifecycle/services"))
    assert head.status_code == 200
    assert head.content == b""
    assert head["Content-Type"] == "application/json"
    # The two bodies differ only in each service's heartbeat age (3 decimals), which moves between the calls.
    assert len(get.content) > 2
    assert abs(int(head["Content-Length"]) - len(get.content)) <= 4 * len(listed)


def test_healthz_turns_503_when_a_service_times_out(
    configure: Callable[..., LifecycleManager], client: Client
) -> None:
    with freezegun.freeze_time("2026-01-01") as frozen:
        # Built inside the freeze, so the manager's deadlines are on the frozen clock.
        manager = configure(HEARTBEAT_INTERVAL_SECS=1, HEARTBEAT_TIMEOUT_SECS=2, AUTO_RECONNECT=False)
        id = start(manager)
        response = client.get("/lifecycle/healthz")
        assert response.status_code == 200
        assert body(response) == {"status": "ok", "services": 1, "failing": []}
        frozen.tick(1.5)
        manager.run_pending()
        assert manager.get_status(id) is ServiceStatus.RUNNING
        assert client.get("/lifecycle/healthz").status_code == 200
        frozen.tick(1.0)
        manager.run_pending()
    response = client.get("/lifecycle/healthz")
    assert response.status_code == 503
    payload = body(response)
    assert payload["status"] == "failing"
    # Without auto-reconnect a timed-out service goes to ERROR and stays there.
    assert payload["failing"] == [{"id": id, "name": "ext", "status": "error"}]
    assert manager.get_status(id) is ServiceStatus.ERROR


def test_wrong_methods_are_405_with_allow(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure()
    id = start(manager)
    cases = [
        ("get", f"/lifecycle/services/{id}/heartbeat", "POST, OPTIONS"),
        ("delete", "/lifecycle/services", "GET, HEAD, OPTIONS"),
        ("put", f"/lifecycle/services/{id}", "GET, HEAD, OPTIONS"),
        ("post", "/lifecycle/healthz", "GET, HEAD, OPTIONS"),
    ]
    for method, url, allow in cases:
        response = getattr(client, method)(url)
        assert response.status_code == 405, (method, url)
        assert response["Allow"] == allow
        assert body(response)["error"] == "method_not_allowed"
        assert body(response)["allowed"] == allow.split(", ")
    response = client.generic("PROPFIND", "/lifecycle/healthz")
    assert response.status_code == 405
    assert body(response)["message"] == "PROPFIND is not allowed here"


def test_options_lists_allowed_methods(configure: Callable[..., LifecycleManager], client: Client) -> None:
    configure(HEARTBEAT_TOKEN=TOKEN)  # OPTIONS needs no credentials
    response = client.options("/lifecycle/services/any/heartbeat")
    assert response.status_code == 204
    assert response["Allow"] == "POST, OPTIONS"
    assert response.content == b""
    assert client.options("/lifecycle/healthz")["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize(
    "url", ["/lifecycle/nope", "/lifecycle/services/", "/lifecycle/healthz/", "/lifecycle/status/"]
)
def test_unknown_paths_under_the_include_are_json_404(
    configure: Callable[..., LifecycleManager], client: Client, url: str
) -> None:
    configure()
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 404
        assert body(response) == {"error": "not_found", "message": f"no lifecycle endpoint at {url!r}"}


def test_bearer_token(configure: Callable[..., LifecycleManager], client: Client) -> None:
    manager = configure(HEARTBEAT_TOKEN=TOKEN, AUTO_RECONNECT=False)
    id = start(manager)
    manager.handle_error(id, "boom")
    assert manager.get_status(id) is ServiceStatus.ERROR
    before = manager.registry.get(id)
    assert before is not None

    url = f"/lifecycle/services/{id}/heartbeat"
    response = client.post(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="lifecycle"'
    assert body(response)["error"] == "unauthorized"
    response = client.post(url, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403
    assert body(response)["error"] == "forbidden"
    response = client.post(url, headers={"Authorization": TOKEN})  # the token without its scheme
    assert response.status_code == 400
    assert body(response)["error"] == "malformed_header"
    # A refused heartbeat changes nothing: still ERROR, same last heartbeat.
    after = manager.registry.get(id)
    assert after is not None
    assert manager.get_status(id) is ServiceStatus.ERROR
    assert after.last_heartbeat == before.last_heartbeat

    assert client.get("/lifecycle/services").status_code == 401
    assert client.get("/lifecycle/healthz", headers={"Authorization": "Bearer nope"}).status_code == 403
    response = client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 204
    assert manager.get_status(id) is ServiceStatus.RUNNING


def test_auth_hook_callable(configure: Callable[..., LifecycleManager], client: Client) -> None:
    seen: list[Any] = []

    def hook(request: Any) -> bool:
        seen.append(request)
        return allow_header(request)

    manager = configure(AUTH=hook)
    id = start(manager)
    response = client.post(f"/lifecycle/services/{id}/heartbeat")
    assert response.status_code == 403
    assert body(response)["message"] == "the authorization hook refused this request"
    assert client.post(f"/lifecycle/services/{id}/heartbeat", headers={"X-Allow": "yes"}).status_code == 204
    assert len(seen) == 2
    assert seen[0].path == f"/lifecycle/services/{id}/heartbeat"  # the hook gets Django's request


def test_auth_hook_dotted_path(configure: Callable[..., LifecycleManager], client: Client) -> None:
    configure(AUTH=f"{__name__}.allow_header")
    assert client.get("/lifecycle/healthz").status_code == 403
    assert client.get("/lifecycle/healthz", headers={"X-Allow": "yes"}).status_code == 200


def test_auth_hook_that_raises_refuses_and_logs(
    configure: Callable[..., LifecycleManager], client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> bool:
        raise RuntimeError("hook is broken")

    manager = configure(AUTH=broken, AUTO_RECONNECT=False)
    id = start(manager)
    manager.handle_error(id, "boom")
    with caplog.at_level(logging.ERROR, logger="lifecycle"):
        response = client.post(f"/lifecycle/services/{id}/heartbeat")
    assert response.status_code == 403
    assert manager.get_status(id) is ServiceStatus.ERROR
    records = [r for r in caplog.records if "authorization hook raised" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_unprotected_endpoints_log_a_warning_once(
    configure: Callable[..., LifecycleManager], client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    configure()
    views._warned.clear()
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        client.get("/lifecycle/healthz")
        client.get("/lifecycle/healthz")
    warnings = [r for r in caplog.records if "have no authorization" in r.getMessage()]
    assert len(warnings) == 1


# -- checks ------------------------------------------------------------------------------------


def test_checks_pass_for_valid_settings() -> None:
    assert lifecycle_ids(LIFECYCLE={"HEARTBEAT_TOKEN": TOKEN, "JITTER": 0.2}) == []
    out = io.StringIO()
    with override_settings(LIFECYCLE={"HEARTBEAT_TOKEN": TOKEN}):
        call_command("check", stdout=out)
    assert "System check identified no issues" in out.getvalue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["JITTER", 0.1], ["lifecycle.E001"]),
        ({1: 2}, ["lifecycle.E001"]),
        ({"JITER": 0.1, "HEARTBEAT_TOKN": "x"}, ["lifecycle.E002", "lifecycle.E002"]),
        ({"JITTER": 5, "HEARTBEAT_TOKEN": TOKEN}, ["lifecycle.E003"]),
        ({"HEARTBEAT_INTERVAL_SECS": 100, "HEARTBEAT_TOKEN": TOKEN}, ["lifecycle.E003"]),
        ({"AUTOSTART": "yes", "HEARTBEAT_TOKEN": TOKEN}, ["lifecycle.E003"]),
        ({"HEARTBEAT_TOKEN": TOKEN, "AUTH": f"{__name__}.allow_header"}, ["lifecycle.E003"]),
        ({"CONNECTOR": 42, "HEARTBEAT_TOKEN": TOKEN}, ["lifecycle.E003"]),
        ({"CONNECTOR": "no_such_module_here.Connector"}, ["lifecycle.E004"]),
        ({"AUTH": f"{__name__}.no_such_hook"}, ["lifecycle.E004"]),
        ({"AUTH": "nodots"}, ["lifecycle.E004"]),
        ({}, ["lifecycle.W001"]),
    ],
)
def test_check_ids(value: Any, expected: list[str]) -> None:
    assert lifecycle_ids(LIFECYCLE=value) == expected


def test_check_messages_are_helpful() -> None:
    with override_settings(LIFECYCLE={"JITER": 0.1}):
        (error,) = [m for m in run_checks(tags=["lifecycle"]) if m.id == "lifecycle.E002"]
    assert error.obj == "settings.LIFECYCLE"
    assert error.msg == "LIFECYCLE['JITER'] is not a lifecycle setting."
    assert error.hint == "Did you mean LIFECYCLE['JITTER']?"
    with override_settings(LIFECYCLE={"JITTER": 5}):
        (error,) = [m for m in run_checks(tags=["lifecycle"]) if m.id == "lifecycle.E003"]
    assert error.msg.startswith("LIFECYCLE['JITTER']: jitter must be within [0, 1]")
    assert error.hint


def test_check_command_fails_with_the_error_id() -> None:
    with override_settings(LIFECYCLE={"JITTER": "high"}), pytest.raises(SystemCheckError) as caught:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert "lifecycle.E003" in str(caught.value)
    assert "LIFECYCLE['JITTER']" in str(caught.value)


def test_w001_only_when_the_endpoints_are_mounted() -> None:
    assert lifecycle_ids(LIFECYCLE={}, ROOT_URLCONF="lifecycle.contrib.django.urls") == []  # no "lifecycle" namespace
    assert lifecycle_ids(LIFECYCLE={"AUTH": f"{__name__}.allow_header"}) == []


# -- the accessor --------------------------------------------------------------------------------


def test_get_manager_raises_improperly_configured(configure: Callable[..., LifecycleManager]) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        configure(JITTER=5)
    assert isinstance(caught.value.__cause__, ConfigurationError)
    assert str(caught.value) == str(caught.value.__cause__)
    assert str(caught.value).startswith("LIFECYCLE['JITTER']: jitter must be within")
    with override_settings(LIFECYCLE="fast"), pytest.raises(ImproperlyConfigured, match="must be a dict, not str"):
        get_manager()
    with override_settings(LIFECYCLE={"CONNECTOR": 42}), pytest.raises(ImproperlyConfigured, match="CONNECTOR"):
        get_manager()


def test_importing_needs_no_configured_settings() -> None:
    # A fresh interpreter: in this one Django is already set up.
    code = (
        "import lifecycle.contrib.django as d, lifecycle.contrib.django.checks, lifecycle.contrib.django.urls\n"
        "try:\n    d.get_manager()\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ImproperlyConfigured"


def test_get_manager_defaults_without_the_setting() -> None:
    assert not hasattr(settings, "LIFECYCLE")
    manager = get_manager()
    assert manager.config == LifecycleConfig()
    assert get_manager() is manager


def test_get_manager_is_one_manager_across_threads(configure: Callable[..., LifecycleManager]) -> None:
    configure()
    integration._reset()
    barrier = threading.Barrier(8)
    seen: list[LifecycleManager] = []

    def call() -> None:
        barrier.wait(WAIT)
        seen.append(get_manager())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(seen) == 8
    assert len({id(m) for m in seen}) == 1


def test_setting_changed_rebuilds_the_manager(configure: Callable[..., LifecycleManager]) -> None:
    first = configure(JITTER=0.2)
    assert get_manager() is first
    second = configure(JITTER=0.3)
    assert first.closed
    assert second is not first
    assert second.config.jitter == 0.3
    assert not second.closed
    with override_settings(OTHER_SETTING=1):
        assert get_manager() is second  # other settings leave the manager alone


def test_manager_is_registered_for_shutdown_at_exit(configure: Callable[..., LifecycleManager]) -> None:
    manager = configure(SHUTDOWN_TIMEOUT=1.5)
    assert _process._at_exit[manager] == 1.5


# -- the management command ----------------------------------------------------------------------


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("lifecycle_status", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_status_command_needs_url_and_builds_no_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integration, "_cached", None)
    for args in [(), ("--json",), ("--token", TOKEN)]:
        with pytest.raises(CommandError, match="--url is required") as refused:
            status(*args)
        assert refused.value.returncode == 2
    assert integration._cached is None  # nothing was built, so nothing to start or stop


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """The test project served over real HTTP on 127.0.0.1 (port chosen by the OS); yields its base URL."""
    httpd: WSGIServer = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/lifecycle"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)
    assert not thread.is_alive()


def test_status_command_over_http(configure: Callable[..., LifecycleManager], server: str) -> None:
    manager = configure(HEARTBEAT_TOKEN=TOKEN)
    start(manager, "remote", id="remote-1")
    lines = status("--url", server, "--token", TOKEN).splitlines()
    assert lines[1].split()[:4] == ["remote-1", "remote", "1.0", "running"]
    listed = json.loads(status("--url", server + "/", "--token", TOKEN, "--json"))
    assert [s["id"] for s in listed] == ["remote-1"]
    with pytest.raises(CommandError, match=r"refused the request with 401.*pass --token"):
        status("--url", server)
    with pytest.raises(CommandError, match=r"refused the request with 403.*check --token"):
        status("--url", server, "--token", "wrong")


def test_status_command_reports_unreachable_and_bad_urls(configure: Callable[..., LifecycleManager]) -> None:
    configure()
    # A port that was just free: nothing listens there, so the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CommandError, match=f"cannot reach http://127.0.0.1:{port}/lifecycle/services"):
        status("--url", f"http://127.0.0.1:{port}/lifecycle", "--timeout", "5")
    with pytest.raises(CommandError, match="must be an http"):
        status("--url", "file:///etc/passwd")


def test_status_command_rejects_a_non_lifecycle_url(configure: Callable[..., LifecycleManager], server: str) -> None:
    manager = configure()
    with pytest.raises(CommandError, match="answered 404"):
        status("--url", server.removesuffix("/lifecycle") + "/elsewhere")
    # <base>/services answers JSON that is not a list: here one service whose id ends in "/services".
    start(manager, id="x/services")
    with pytest.raises(CommandError, match="did not answer with a list"):
        status("--url", server + "/services/x")


def test_an_auth_module_that_asks_for_the_manager_while_importing_does_not_deadlock(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dotted paths are imported outside the accessor's lock: a module calling get_manager() at import
    time gets an error (its own hook is not defined yet), never a hang."""
    (tmp_path / "selfish_auth.py").write_text(
        "from lifecycle.contrib.django import get_manager\nMANAGER = get_manager()\n"
        "def check(request):\n    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            get_manager()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with override_settings(LIFECYCLE={"AUTOSTART": False, "AUTH": "selfish_auth.check"}):
        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive(), "get_manager() deadlocked"
    assert len(outcome) == 1 and isinstance(outcome[0], ImproperlyConfigured), outcome
    assert "LIFECYCLE['AUTH']" in str(outcome[0])
    sys.modules.pop("selfish_auth", None)


def test_metrics_endpoint_is_text_exposition_behind_the_token(
    configure: Callable[..., LifecycleManager], client: Client
) -> None:
    prometheus = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    manager = configure(HEARTBEAT_TOKEN=TOKEN)
    id = start(manager)
    assert client.get("/lifecycle/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(f"/lifecycle/services/{id}/heartbeat", headers=auth).status_code == 204
    response = client.get("/lifecycle/metrics", headers=auth)
    assert response.status_code == 200 and response["Content-Type"] == prometheus.CONTENT_TYPE_LATEST
    samples = {(s.name, s.labels.get("status")): s.value
               for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}
    assert samples[("lifecycle_heartbeats_total", None)] == 1
    assert samples[("lifecycle_services", "running")] == 1
    head = client.head("/lifecycle/metrics", headers=auth)
    assert head.status_code == 200 and head.content == b""
