"""Which part a process plays when it loads the app: one that serves, one that forks servers, or neither.

A manager watches only where requests are served (see `_process`). Waiting for the first
request to learn that leaves a process with little HTTP traffic unwatched, so the integrations
ask, while the app loads, what the server itself has already decided, from the call stack and
the command line the server runs:

- gunicorn: the app is loaded either by a worker (`Worker.load_wsgi`, with or without
  `--preload`'s master having loaded it before) or, under `--preload`, by the master
  (`Arbiter.setup`), which serves nothing and forks the workers. Every worker class (sync,
  gthread, gevent, uvicorn's) runs `gunicorn.workers.base.Worker.init_process` for its whole life.
- `flask run`: the process that serves is the one without the reloader, or the reloader's child
  (`WERKZEUG_RUN_MAIN=true`); its parent only restarts the child. Any other `flask` command serves nothing.
- `manage.py runserver`: likewise the reloader's child (`RUN_MAIN=true`) or `--noreload`
  (the test Django itself uses); any other management command serves nothing.
- Django's `get_wsgi_application()` / `get_asgi_application()` under any other server: the app
  is being loaded to be served, but the process may be a pre-forking master (uWSGI without
  `lazy-apps`), so it is `LOADS`: build the manager, and watch from the first request or fork.

Anything else is unknown (`None`): tests, a script's `app.run()`, uWSGI. Such a process starts
watching at its first request, after a fork, or when the host calls `start_watching()`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Final

__all__ = ["FORKS", "IDLE", "LOADS", "SERVES", "boot_role"]

SERVES: Final = "serves"
"""This process serves requests (a gunicorn worker, the serving process of `flask run` or `runserver`)."""
FORKS: Final = "forks"
"""This process serves nothing itself but forks the processes that do (gunicorn's master under `--preload`)."""
LOADS: Final = "loads"
"""The app is being loaded for a server that is not recognised; it may serve here or fork."""
IDLE: Final = "idle"
"""This process serves nothing: a `flask` or `manage.py` command, or a reloader's parent."""

_GUNICORN_WORKER = "gunicorn.workers.base"
_GUNICORN_MASTER = "gunicorn.arbiter"
_DJANGO_COMMAND = "django.core.management"
_DJANGO_LOADERS = frozenset({"django.core.wsgi", "django.core.asgi"})


def boot_role() -> str | None:
    """The part this process plays, read from the caller's stack and the server's command line; None: unknown."""
    master = loads = False
    argv: Sequence[str] | None = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__")
        if module == _GUNICORN_WORKER:
            return SERVES  # a worker's stack holds its master's frames too (it was forked there): this wins
        if module == _GUNICORN_MASTER:
            master = True
        elif module in _DJANGO_LOADERS:
            loads = True
        elif module == _DJANGO_COMMAND and frame.f_code.co_name == "execute" and argv is None:
            found = getattr(frame.f_locals.get("self"), "argv", None)
            argv = found if isinstance(found, list) else None
        frame = frame.f_back
    if master:
        return FORKS
    if argv is not None:
        return _management_command(argv)
    if loads:
        return LOADS
    return _flask_command()


def _management_command(argv: Sequence[str]) -> str:
    """`manage.py <command>`: only runserver's serving process serves (the test is Django's own)."""
    if len(argv) < 2 or argv[1] != "runserver":
        return IDLE
    if "--noreload" in argv or os.environ.get("RUN_MAIN") == "true":
        return SERVES
    return IDLE


def _flask_command() -> str | None:
    """Inside a `flask` command: `run`'s serving process serves, every other command is IDLE; else None."""
    click = sys.modules.get("click")
    flask_cli = sys.modules.get("flask.cli")
    if click is None or flask_cli is None:
        return None
    context = click.get_current_context(silent=True)
    if context is None or not isinstance(context.find_root().command, flask_cli.FlaskGroup):
        return None
    if context.command.name != "run":
        return IDLE
    reload = context.params.get("reload")
    if reload is None:  # flask run's own default: the reloader follows --debug
        from flask.helpers import get_debug_flag

        reload = get_debug_flag()
    if not reload or os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return SERVES
    return IDLE
