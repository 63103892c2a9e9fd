"""The status page in a real headless Chromium, against a real Flask server and a real Django server.

Each server runs on 127.0.0.1 (port from the OS) in a thread, with a manager that has its real
watchdog. Every wait is WebDriverWait or an Event with a generous bound; the page polls every
0.5 s (`?refresh=0.5`). Without chromium, chromedriver or selenium these tests are skipped
with the reason; `.ci/run` installs the browser.
"""

from __future__ import annotations

import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as make_wsgiref_server

import pytest

from lifecycle import ExtensionService, LifecycleManager, ServiceStatus
from lifecycle.testing import EventRecorder

pytestmark = pytest.mark.threaded

TOKEN = "page-s3cret"
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'
REFRESH = 0.5  # seconds between the page's polls
WAIT = 15.0  # generous bound for anything the page should do within a refresh or two
FAST = {
    "HEARTBEAT_INTERVAL_SECS": 0.2,
    "HEARTBEAT_TIMEOUT_SECS": 1.0,
    "MAX_RECONNECT_ATTEMPTS": 3,
    "RECONNECT_DELAY_MS": 30_000,  # a silent service stays RECONNECTING while the test looks at it
    "MAX_RECONNECT_DELAY_MS": 30_000,
    "JITTER": 0.0,
    "SHUTDOWN_TIMEOUT": 2.0,
}

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1200,900",
)


def _browser_or_skip() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is not installed (it is in the test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no chromium/chromedriver on PATH; .ci/run installs them (apt-get install chromium-driver)")
    return binary, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile; each test gets a blank tab state."""
    binary, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lifecycle-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Served:
    """A running server: its manager, the page's URL, and every request line it received."""

    manager: LifecycleManager
    base: str
    requests: list[tuple[str, bool]] = field(default_factory=list)  # (path?query, had an Authorization header)
    stop: Callable[[], None] = lambda: None

    @property
    def page(self) -> str:
        return f"{self.base}/?refresh={REFRESH}"


def _recording(app: Callable[..., Any], served: Served) -> Callable[..., Any]:
    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = environ.get("QUERY_STRING", "")
        served.requests.append((environ["PATH_INFO"] + ("?" + query if query else ""), "HTTP_AUTHORIZATION" in environ))
        return app(environ, start_response)

    return wsgi


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _serve(app: Callable[..., Any], served: Served) -> Callable[[], None]:
    """Serve `app` on 127.0.0.1 in a thread; returns the (idempotent) stop function."""
    httpd = make_wsgiref_server("127.0.0.1", 0, _recording(app, served), server_class=_ThreadedServer,
                                handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{httpd.server_port}/lifecycle"
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(WAIT)
            assert not thread.is_alive()

    return stop


@pytest.fixture
def flask_server() -> Iterator[Callable[..., Served]]:
    """`flask_server(**LIFECYCLE)`: a Flask app with lifecycle (real watchdog) served over HTTP."""
    pytest.importorskip("flask")
    from flask import Flask

    from lifecycle.contrib.flask import Lifecycle

    started: list[Served] = []

    def start(**settings: Any) -> Served:
        app = Flask(f"page{len(started)}")
        app.config.update({f"LIFECYCLE_{key}": value for key, value in {**FAST, **settings}.items()})
        manager = Lifecycle(app).get_manager(app)
        served = Served(manager, "")
        served.stop = _serve(app.wsgi_app, served)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()
        served.manager.shutdown(2.0)


@pytest.fixture
def django_server() -> Iterator[Callable[..., Served]]:
    """`django_server(**LIFECYCLE)`: the Django test project (real watchdog) served over HTTP."""
    pytest.importorskip("django")
    import django_setup  # noqa: F401  (configures Django)
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    import lifecycle.contrib.django as integration

    overrides: list[Any] = []
    started: list[Served] = []

    def start(**settings: Any) -> Served:
        override = override_settings(LIFECYCLE={**FAST, **settings})
        override.enable()
        overrides.append(override)
        served = Served(integration.get_manager(), "")
        served.stop = _serve(WSGIHandler(), served)
        started.append(served)
        return served

    integration._reset()
    yield start
    for served in started:
        served.stop()
    for override in reversed(overrides):
        override.disable()  # setting_changed shuts the manager down
    integration._reset()


@pytest.fixture(params=["flask", "django"])
def server(request: pytest.FixtureRequest) -> Callable[..., Served]:
    """Each test using it runs once against Flask and once against Django."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


# -- reading the page ------------------------------------------------------------------------------


def wait(browser: Any, condition: Callable[[Any], Any], message: str, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition, message)


def rows(browser: Any) -> list[dict[str, str]]:
    """The services table as the user sees it: one dict per row, keyed by column label."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """return Array.from(document.querySelectorAll('#services tbody tr')).map((tr) => {
             const row = {id: tr.dataset.id};
             for (const td of tr.cells) row[td.dataset.label] = td.innerText.trim();
             row.badge = tr.querySelector('.badge').textContent;
             row.name = tr.querySelector('.name').textContent;
             return row;
           });"""
    )


def text_of(browser: Any, element_id: str) -> str:
    return browser.execute_script(  # type: ignore[no-any-return]
        "const e = document.getElementById(arguments[0]); return e.hidden ? '' : e.innerText;", element_id
    )


def polls_once_shown(browser: Any, badges: list[str]) -> int | None:
    """The page's poll count if its badges are `badges` now (both read at one instant), else None."""
    shown, count = browser.execute_script(
        "return [Array.from(document.querySelectorAll('#services tbody .badge')).map((e) => e.textContent),"
        " Number(document.documentElement.dataset.polls || 0)];"
    )
    return int(count) if shown == badges else None


def polls(browser: Any) -> int:
    return int(browser.execute_script("return Number(document.documentElement.dataset.polls || 0);"))


def start(manager: LifecycleManager, name: str, id: str | None = None) -> str:
    service = ExtensionService(name, "1.0") if id is None else ExtensionService(name, "1.0", id=id)
    return str(manager.start_service(service))


class Beat:
    """Heartbeats a service from a thread every 0.1 s until stopped: a service that is alive."""

    def __init__(self, manager: LifecycleManager, id: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(manager, id), daemon=True)
        self._thread.start()

    def _run(self, manager: LifecycleManager, id: str) -> None:
        while not self._stop.wait(0.1):
            manager.handle_heartbeat(id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()


# -- the tests --------------------------------------------------------------------------------------


def test_the_page_lists_the_services_counts_and_events(browser, server):
    served = server()
    alpha = start(served.manager, "alpha", "alpha-1")
    beat = Beat(served.manager, alpha)  # alive however long the browser takes to load the page
    start(served.manager, "beta", "beta-1")
    served.manager.handle_error("beta-1", "database gone")
    try:
        browser.get(served.page)

        wait(browser, lambda b: len(rows(b)) == 2, "the table never listed both services")
        listed = {row["id"]: row for row in rows(browser)}
        assert listed[alpha]["name"] == "alpha" and listed[alpha]["badge"] == "running"
        assert listed["beta-1"]["badge"] == "reconnecting" and listed["beta-1"]["Reconnect attempt"] == "1 of 3"
        assert "ago" in listed[alpha]["Last heartbeat"]
        counts = browser.execute_script(
            "return Object.fromEntries(Array.from(document.querySelectorAll('#counts button'))"
            ".map((b) => [b.dataset.status || 'all', Number(b.querySelector('.n').textContent)]));"
        )
        assert counts == {"all": 2, "running": 1, "starting": 0, "reconnecting": 1, "error": 0, "stopping": 0,
                          "stopped": 0}
        events = text_of(browser, "events").splitlines()
        assert any("beta: database gone" in line for line in events)
        # Newest first: beta's reconnect attempt is listed above alpha's start.
        first_reconnect = next(i for i, line in enumerate(events) if "reconnect attempt 1 of 3" in line)
        alpha_started = next(i for i, line in enumerate(events) if line.endswith("service started alpha"))
        assert first_reconnect < alpha_started
        assert text_of(browser, "connection") == ""
    finally:
        beat.stop()


def test_a_service_name_with_markup_is_shown_as_text(browser, server):
    served = server()
    evil = start(served.manager, EVIL)
    served.manager.handle_error(evil, EVIL)
    browser.get(served.page)

    wait(browser, lambda b: len(rows(b)) == 1, "the table never listed the service")
    assert rows(browser)[0]["name"] == EVIL
    assert EVIL + ": " + EVIL in text_of(browser, "events")
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('main script, main img').length") == 0


def test_a_service_that_goes_silent_changes_badge_within_one_refresh_without_reload(browser, server):
    served = server()
    quiet = start(served.manager, "quiet")
    beat = Beat(served.manager, quiet)
    recorder = EventRecorder().record(served.manager)
    try:
        browser.get(served.page)
        wait(browser, lambda b: [r["badge"] for r in rows(b)] == ["running"], "the service never showed running")
        browser.execute_script("window.__sameDocument = true;")

        beat.stop()  # the service goes silent; the watchdog times it out within the 1 s heartbeat timeout
        assert recorder.wait_for(
            lambda events: any(getattr(e, "new_status", None) is ServiceStatus.RECONNECTING for e in events), WAIT
        ), "the manager never timed the silent service out"
        polls_at_change = polls(browser)
        # The badge and the poll count read together: a poll renders, then counts itself.
        shown_at = wait(browser, lambda b: polls_once_shown(b, ["reconnecting"]), "the badge never changed")
        # The poll under way when the status changed may have missed it; the next one must not.
        assert shown_at - polls_at_change <= 2
        assert browser.execute_script("return window.__sameDocument") is True, "the page was reloaded"
        assert rows(browser)[0]["Reconnect attempt"] == "1 of 3"
        assert "heartbeat timeout" in text_of(browser, "events")
    finally:
        beat.stop()
        recorder.close()


def test_a_wrong_token_shows_a_clear_message_and_the_right_one_is_kept_for_the_tab(browser, server):
    from selenium.webdriver.common.by import By

    served = server(HEARTBEAT_TOKEN=TOKEN)
    start(served.manager, "guarded", "guarded-1")
    browser.get(served.page)

    wait(browser, lambda b: "needs a bearer token" in text_of(b, "token-form"), "the page never asked for the token")
    assert rows(browser) == []
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait(browser, lambda b: "refused this token" in text_of(b, "connection"), "no message for the wrong token")
    assert "not the right one" in text_of(browser, "token-form")
    assert rows(browser) == []

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token").submit()
    wait(browser, lambda b: [r["id"] for r in rows(b)] == ["guarded-1"], "the right token never showed the table")
    assert text_of(browser, "token-form") == ""

    browser.refresh()  # kept for the tab: not asked again
    wait(browser, lambda b: [r["id"] for r in rows(b)] == ["guarded-1"], "the token was not kept for the tab")
    assert text_of(browser, "token-form") == ""

    assert not any(TOKEN in url or "not-the-token" in url for url, _ in served.requests), served.requests
    assert TOKEN not in browser.current_url
    status_requests = [auth for url, auth in served.requests if url.endswith("/status")]
    assert status_requests[0] is False and status_requests[-1] is True


def test_the_page_says_when_the_server_cannot_be_reached(browser, flask_server):
    served = flask_server()
    start(served.manager, "alpha")
    browser.get(served.page)
    wait(browser, lambda b: len(rows(b)) == 1, "the table never listed the service")

    served.stop()
    wait(browser, lambda b: "Cannot reach the server" in text_of(b, "connection"), "no unreachable message")
    assert "the data below is from" in text_of(browser, "connection")
    assert [r["name"] for r in rows(browser)] == ["alpha"]  # the last data stays, marked stale


def test_with_an_auth_hook_the_page_uses_the_hosts_session(browser, flask_server):
    served = flask_server(AUTH=lambda request: request.cookies.get("session") == "signed-in")
    start(served.manager, "alpha", "alpha-1")
    browser.get(served.page)
    wait(browser, lambda b: "refused access (403" in text_of(b, "connection"), "no message for the refusal")
    assert text_of(browser, "token-form") == ""  # a hook is not a token: nothing to type in

    browser.add_cookie({"name": "session", "value": "signed-in", "path": "/"})
    wait(browser, lambda b: [r["id"] for r in rows(b)] == ["alpha-1"], "the session cookie never let the page in")
    assert text_of(browser, "connection") == ""


def test_the_page_works_from_the_keyboard_and_keeps_focus_across_refreshes(browser, flask_server):
    served = flask_server()
    beat = Beat(served.manager, start(served.manager, "alpha", "alpha-1"))
    start(served.manager, "beta", "beta-1")
    served.manager.handle_error("beta-1", "database gone")
    try:
        browser.get(served.page)
        wait(browser, lambda b: len(rows(b)) == 2, "the table never listed both services")
        use_the_keyboard(browser)
    finally:
        beat.stop()


def use_the_keyboard(browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    focused = "return document.activeElement.dataset.status ?? document.activeElement.textContent;"
    seen = []
    for _ in range(12):  # skip link, two controls, then the count buttons
        browser.switch_to.active_element.send_keys(Keys.TAB)
        seen.append(browser.execute_script(focused))
        if seen[-1] == "reconnecting":
            break
    assert seen[-1] == "reconnecting", f"Tab never reached the 'reconnecting' count; it visited {seen}"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(browser, lambda b: [r["id"] for r in rows(b)] == ["beta-1"], "Enter on the count did not filter the table")

    after = polls(browser) + 2
    wait(browser, lambda b: polls(b) >= after, "the page stopped refreshing")
    assert browser.execute_script(focused) == "reconnecting", "a refresh took the keyboard focus away"
    assert browser.execute_script("return document.activeElement.getAttribute('aria-pressed')") == "true"
    assert [r["id"] for r in rows(browser)] == ["beta-1"]


def fleet_view(browser: Any) -> tuple[str, str]:
    """The header's leader part and the events as the user reads them, from one instant."""
    scope, events = browser.execute_script(
        "return [document.getElementById('scope').innerText, document.getElementById('events').innerText];"
    )
    leader = next((part for part in scope.split(" \u00b7 ") if part.startswith("leader: ")), "")
    return leader, events


def test_in_fleet_mode_every_workers_page_names_the_same_leader_and_events(
        browser, flask_server, redis_server, namespace):
    """Two servers of one fleet, as two workers: each page names the registry's leader and the fleet's events."""
    import os
    import socket

    pytest.importorskip("redis")
    settings = {"REDIS_URL": redis_server.url, "NAMESPACE": namespace, "HEARTBEAT_TIMEOUT_SECS": 30}
    one, two = flask_server(**settings), flask_server(**settings)
    sid = start(one.manager, "shared", "shared-1")
    two.manager.handle_error(sid, "disk full")  # RECONNECTING for 30 s while the pages are read
    try:
        seen = []
        for served in (two, one):
            browser.get(served.page)
            wait(browser, lambda b: [(r["id"], r["badge"]) for r in rows(b)] == [("shared-1", "reconnecting")],
                 "the fleet's service was never listed")
            # Whichever of the two takes the lease first, at its watchdog's first tick, is named by both.
            wait(browser, lambda b: fleet_view(b)[0] != "" and "service error" in fleet_view(b)[1],
                 "the page never named the leader beside the service's error")
            assert text_of(browser, "scope").startswith("Fleet, as seen by process ")
            assert text_of(browser, "no-events") == ""
            seen.append(fleet_view(browser))
        assert seen[0] == seen[1]
        assert seen[0][0] == f"leader: process {os.getpid()} on {socket.gethostname()} (this one)"
        assert "disk full" in seen[0][1]
    finally:
        one.manager.stop_all()


def test_a_partitioned_fleets_page_names_each_partitions_leader(browser, flask_server, redis_server, namespace):
    """One lease per partition: the header names each partition's holder, "(this one)" where it is this process."""
    import os
    import socket

    pytest.importorskip("redis")
    from lifecycle.redis import RedisRegistry

    other = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=3)
    try:
        assert other.lease("web-9:4243:abcdef", 30.0, partition=1).leader  # type: ignore[call-arg]
        served = flask_server(REDIS_URL=redis_server.url, NAMESPACE=namespace, REDIS_PARTITIONS=3)
        browser.get(served.page)
        here = f"process {os.getpid()} on {socket.gethostname()} (this one)"
        expected = f"leaders: {'p0 ' + here}, p1 process 4243 on web-9, {'p2 ' + here}"
        # The server's watchdog takes the two leases nobody holds at its first ticks.
        wait(browser, lambda b: expected in text_of(b, "scope").split(" \u00b7 "),
             f"the page never named every partition's leader as {expected!r}")
    finally:
        other.release("web-9:4243:abcdef")
        other.client.close()


def test_under_gunicorn_whichever_worker_answers_the_page_names_the_same_leader_and_events(
        browser, redis_server, namespace, request):
    """Two real gunicorn workers of one fleet answer the page's polls in turn (no request is ever
    sent to them before): each answer names the registry's leader the same way, "(this one)" only
    from the leader itself, and lists the same events, read from the fleet's log."""
    import re
    import sys

    import redis_server as servers

    servers.only_on_first_binary(request, "the page's fleet view tests workers, not the server")
    gunicorn = pytest.importorskip("test_gunicorn", reason="gunicorn is not installed")
    argv = [sys.executable, "-m", "gunicorn", *gunicorn._gunicorn_flags(), "--bind", "127.0.0.1:0",
            "--chdir", str(gunicorn.BOOT_APPS), "--workers", "2", "flask_boot:app"]
    server = gunicorn.Process(argv, gunicorn.boot_env(  # the declared service is silent and does not reconnect
        "flask", REDIS_URL=redis_server.url, NAMESPACE=namespace, HEARTBEAT_INTERVAL_SECS=0.5,
        HEARTBEAT_TIMEOUT_SECS=1.0))
    try:
        port = server.wait_for(lambda lines: re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "\n".join(lines)))
        workers = server.wait_for(lambda lines: (pids := set(re.findall(r"Booting worker with pid: (\d+)",
                                                                        "\n".join(lines)))) and len(pids) >= 2
                                  and {int(p) for p in pids})
        server.wait_for(lambda lines: gunicorn.timed_out(server))  # started, timed out, ERROR: no more events
        browser.get(f"http://127.0.0.1:{port.group(1)}/lifecycle/?refresh={REFRESH}")
        seen: dict[int, set[tuple[str, str]]] = {}

        def every_worker_answered(b: Any) -> bool:
            scope, events, count = b.execute_script(
                "return [document.getElementById('scope').innerText, document.getElementById('events').innerText,"
                " document.querySelectorAll('#events li').length];")
            answering = re.search(r"as seen by process (\d+)", scope)  # all read at one instant, as the user sees
            if answering and count == 4:  # started, running, heartbeat timeout, error: the whole log
                leader = next((part for part in scope.split(" \u00b7 ") if part.startswith("leader: ")), "")
                seen.setdefault(int(answering.group(1)), set()).add((leader, events))
            return set(seen) >= workers

        wait(browser, every_worker_answered, "the two workers never both answered the page", timeout=WAIT * 4)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "\n".join(server.lines)
    views = {pid: view for pid, views in seen.items() for view in views}
    assert all(len(views) == 1 for views in seen.values()), seen  # each worker answered the same every time
    leaders = {view[0].removesuffix(" (this one)") for view in views.values()}
    assert len(leaders) == 1, views
    named = re.fullmatch(r"leader: process (\d+) on .+", leaders.pop())
    assert named is not None and int(named.group(1)) in workers, views
    leader_pid = int(named.group(1))
    assert {pid: view[0].endswith(" (this one)") for pid, view in views.items()} == {
        pid: pid == leader_pid for pid in views}
    assert len({view[1] for view in views.values()}) == 1, views  # the same events, from the fleet's log
