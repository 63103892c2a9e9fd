"""Flask integration: `Lifecycle(app)` or `Lifecycle()` + `init_app(app)`, config from `LIFECYCLE_*` keys.

The manager lives in `app.extensions["lifecycle"]` (or `Lifecycle.manager` inside an app
context), and `flask lifecycle status --url URL` prints a running server's services. Unless `LIFECYCLE_ENDPOINTS` is
False, a blueprint serves the HTTP endpoints under `LIFECYCLE_URL_PREFIX` (default
"/lifecycle"). Each worker process of a server has its own manager and registry: a heartbeat
POSTed to one worker is not seen by the others.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Mapping

import click
from flask import Blueprint, Flask, Response, current_app, request, request_started
from flask.cli import AppGroup
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import RequestRedirect

from .. import _validate
from ..errors import FieldError
from ..manager import LifecycleManager
from ._http import METHODS, Reply, not_found, serve
from ._process import build_manager, start_watching
from ._settings import ConfigurationError, Settings, check_settings, log_registry
from ._status import URL_REQUIRED, StatusUnavailable, fetch_services, render_table

__all__ = ["EXTENSION_KEY", "Lifecycle"]

log = logging.getLogger("lifecycle")

EXTENSION_KEY = "lifecycle"
"""`app.extensions[EXTENSION_KEY]` is the app's `LifecycleManager`."""

_PREFIX = "LIFECYCLE_"
_FLASK_KEYS = ("ENDPOINTS", "URL_PREFIX")


def _spell(key: str) -> str:
    return _PREFIX + key


class Lifecycle:
    """The Flask extension: one `LifecycleManager` per app, shut down when the process exits.

    `connector`, when given, is used instead of `LIFECYCLE_CONNECTOR` for every app.
    """

    def __init__(self, app: Flask | None = None, *, connector: object = None) -> None:
        self.connector = connector
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> LifecycleManager:
        """Validate the app's `LIFECYCLE_*` config, build its manager and mount the endpoints.

        Raises one `ConfigurationError` listing every bad key (its `problems`), each by name;
        the app is then left untouched. Logs one INFO line saying which registry the manager uses.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"lifecycle is already initialised on app {app.name!r}")
        values = {key[len(_PREFIX) :]: value for key, value in app.config.items() if key.startswith(_PREFIX)}
        parsed, errors = check_settings(values, _spell, extra=_FLASK_KEYS)
        endpoints, prefix = _endpoint_settings(values, errors)
        if parsed is None or errors:
            raise ConfigurationError.of(errors)
        settings = parsed
        if self.connector is not None:
            settings = dataclasses.replace(settings, connector=self.connector)
        blueprint = _blueprint(settings, prefix) if endpoints else None
        manager = build_manager(settings)
        if blueprint is not None:
            try:
                app.register_blueprint(blueprint)
            except BaseException:  # e.g. the app already has a blueprint named "lifecycle"
                manager.shutdown(0)
                raise
        app.extensions[EXTENSION_KEY] = manager
        log_registry(settings)
        app.cli.add_command(cli)
        if blueprint is not None and not settings.protected:
            log.warning(
                "lifecycle: the endpoints under %s have no authorization; set LIFECYCLE_HEARTBEAT_TOKEN "
                "or LIFECYCLE_AUTH before exposing them beyond a trusted network",
                prefix,
            )
        return manager

    @property
    def manager(self) -> LifecycleManager:
        """The current app's manager (needs an app context)."""
        return self.get_manager()

    def get_manager(self, app: Flask | None = None) -> LifecycleManager:
        """The manager of `app` (the current app by default)."""
        target = app if app is not None else current_app
        try:
            manager: LifecycleManager = target.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError("lifecycle is not initialised on this app; call Lifecycle.init_app(app)") from None
        return manager


def _on_request(sender: object, **extra: object) -> None:
    """A request in this process: it serves, so the managers watch here (see `_process`)."""
    start_watching()


request_started.connect(_on_request)


def _endpoint_settings(values: Mapping[str, object], errors: list[ConfigurationError]) -> tuple[bool, str]:
    """LIFECYCLE_ENDPOINTS and LIFECYCLE_URL_PREFIX; a bad one is added to `errors` (the defaults returned)."""

    def fail(setting: str, message: str, code: str = "invalid") -> None:
        errors.append(ConfigurationError(_spell(setting), message, code=code, setting=setting))

    endpoints = values.get("ENDPOINTS", True)
    if not isinstance(endpoints, bool):
        fail("ENDPOINTS", f"must be a bool, not {type(endpoints).__name__}", "type")
        endpoints = True
    prefix = values.get("URL_PREFIX", "/lifecycle")
    try:
        _validate.text(prefix, _spell("URL_PREFIX"))
    except FieldError as exc:
        fail("URL_PREFIX", exc.detail, exc.code)
        return endpoints, "/lifecycle"
    assert isinstance(prefix, str)
    if not prefix.startswith("/") or not prefix.strip("/"):
        fail("URL_PREFIX", f"must be a path below the root like '/lifecycle', not {_validate.quote(prefix)}")
        return endpoints, "/lifecycle"
    return endpoints, prefix.rstrip("/")


def _response(reply: Reply) -> Response:
    return current_app.response_class(
        reply.content(), reply.status, headers=dict(reply.headers), content_type=reply.media_type
    )


_RULES = (
    ("/services/<path:id>/heartbeat", "heartbeat"),
    ("/services", "list_services"),
    ("/services/<path:id>", "get_service"),
    ("/healthz", "healthz"),
    ("/metrics", "metrics"),
    ("/status", "status"),
    ("/", "status_page"),
    ("/<any('status.css', 'status.js'):name>", "status_asset"),
)
"""URL rule under the prefix -> its `_http.ENDPOINTS` key, which is also the Flask endpoint's name."""


def _blueprint(settings: Settings, prefix: str) -> Blueprint:
    """The endpoints for one app; every answer under the prefix is JSON (the status page's files aside).

    Each view is named after its `_http.ENDPOINTS` key: `routing_failed` maps a rule back to it.
    """
    blueprint = Blueprint("lifecycle", __name__, url_prefix=prefix)

    def answer(endpoint: str, **arguments: str) -> Response:
        return _response(serve(endpoint, current_app.extensions[EXTENSION_KEY], settings, request, **arguments))

    for rule, endpoint in _RULES:
        blueprint.add_url_rule(rule, endpoint, functools.partial(answer, endpoint), methods=METHODS)

    @blueprint.before_app_request
    def routing_failed() -> Response | None:
        # Flask sends routing errors (unknown path, exotic method) to app-wide handlers, which
        # would answer in HTML; under our prefix the answer is JSON like everything else.
        error = request.routing_exception
        if error is None or not (request.path == prefix or request.path.startswith(prefix + "/")):
            return None
        if isinstance(error, RequestRedirect) and request.method in ("GET", "HEAD"):
            return None  # <prefix> without its slash: the redirect leads to the status page
        if isinstance(error, MethodNotAllowed):
            # Our rules take every common method, so this one is exotic; find the endpoint by
            # matching with OPTIONS (which each takes) and let it refuse the method properly.
            adapter = current_app.create_url_adapter(request)
            if adapter is not None:
                rule, arguments = adapter.match(method="OPTIONS", return_rule=True)
                return answer(rule.endpoint.rpartition(".")[2], **arguments)
        return _response(not_found(request.path))

    return blueprint


cli = AppGroup("lifecycle", help="Lifecycle services of a running server.")


@cli.command("status", with_appcontext=False)
@click.option("--url", help="(required) Base URL of the endpoints on a running server, e.g. http://127.0.0.1:5000/lifecycle.")
@click.option("--token", help="Bearer token for --url (the server's LIFECYCLE_HEARTBEAT_TOKEN).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for --url.")
@click.option("--json", "as_json", is_flag=True, help="Print the services as JSON.")
def status_command(url: str | None, token: str | None, timeout: float, as_json: bool) -> None:
    """Show the services of a running server (--url).

    This command's own process serves nothing, so it asks the server's endpoints; it needs no
    app and, installed as a `flask.commands` plugin, does not even load one.
    """
    if not url:
        raise click.UsageError(URL_REQUIRED)
    try:
        services = fetch_services(url, token, timeout)
    except StatusUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(services, indent=2) if as_json else render_table(services))
