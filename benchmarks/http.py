"""What the HTTP endpoints cost per request, against the same framework's empty view, in one process.

    python -m benchmarks.http                 # Flask and Django, 1 / 1,000 / 10,000 services
    python -m benchmarks.http --rounds 15

Requests go through each framework's test client (no sockets), so the numbers are the
framework's request handling plus ours. Every round times the baseline (an empty view answering
204) and each endpoint back to back, so drift of the machine hits all alike; the table gives the
median over rounds in µs per request and the ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from lifecycle import ExtensionService

BATCH = 200


def per_request_us(call: Callable[[], object], batch: int = BATCH) -> float:
    start = time.perf_counter_ns()
    for _ in range(batch):
        call()
    return (time.perf_counter_ns() - start) / batch / 1000.0


def flask_app(n: int, failing: int = 0) -> Any:
    from flask import Flask

    from lifecycle.contrib.flask import Lifecycle

    app = Flask("bench")
    app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_HEARTBEAT_TOKEN="s3cret")

    @app.post("/noop")
    def noop() -> tuple[str, int]:
        return "", 204

    Lifecycle(app)
    manager = app.extensions["lifecycle"]
    ids = [manager.start_service(ExtensionService(f"s{i}", "1")) for i in range(n)]
    for sid in ids[:failing]:
        manager.handle_error(sid, "down")
    return app, manager, ids


def flask_calls(n: int) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    app, manager, ids = flask_app(n)
    broken_app, broken, _ = flask_app(n, failing=1)
    client, broken_client = app.test_client(), broken_app.test_client()
    auth = {"Authorization": "Bearer s3cret"}
    beat = f"/lifecycle/services/{ids[-1]}/heartbeat"

    def close() -> None:
        manager.shutdown()
        broken.shutdown()

    return {
        "baseline: empty view": lambda: client.post("/noop", headers=auth),
        "POST heartbeat": lambda: client.post(beat, headers=auth),
        "GET healthz (all running)": lambda: client.get("/lifecycle/healthz", headers=auth),
        "GET healthz (1 failing)": lambda: broken_client.get("/lifecycle/healthz", headers=auth),
        "GET services/<id>": lambda: client.get(f"/lifecycle/services/{ids[-1]}", headers=auth),
        "GET status (the page's JSON)": lambda: client.get("/lifecycle/status", headers=auth),
        "GET / (the status page)": lambda: client.get("/lifecycle/"),
        "POST heartbeat, refused (401)": lambda: client.post(beat),
    }, close


def django_calls(n: int) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import include, path

    def noop(request: Any) -> HttpResponse:
        return HttpResponse(status=204)

    global urlpatterns
    urlpatterns = [path("noop", noop), path("lifecycle/", include("lifecycle.contrib.django.urls"))]
    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__, MIDDLEWARE=[],
            INSTALLED_APPS=["lifecycle.contrib.django"], LIFECYCLE={"AUTOSTART": False, "HEARTBEAT_TOKEN": "s3cret"},
        )
        django.setup()
    from django.test import Client

    from lifecycle.contrib.django import get_manager

    manager = get_manager()
    for service in manager.registry.list_all():
        manager.stop_service(service.id)
    ids = [manager.start_service(ExtensionService(f"s{i}", "1")) for i in range(n)]
    client = Client(HTTP_AUTHORIZATION="Bearer s3cret")
    bare = Client()
    beat = f"/lifecycle/services/{ids[-1]}/heartbeat"
    return {
        "baseline: empty view": lambda: client.post("/noop"),
        "POST heartbeat": lambda: client.post(beat),
        "GET healthz (all running)": lambda: client.get("/lifecycle/healthz"),
        "GET services/<id>": lambda: client.get(f"/lifecycle/services/{ids[-1]}"),
        "GET status (the page's JSON)": lambda: client.get("/lifecycle/status"),
        "GET / (the status page)": lambda: bare.get("/lifecycle/"),
        "POST heartbeat, refused (401)": lambda: bare.post(beat),
    }, lambda: None


urlpatterns: list[Any] = []


def measure(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    for call in calls.values():  # warm up: imports, URL map compilation, caches
        per_request_us(call, 20)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(per_request_us(call))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,10000", help="numbers of services, comma-separated")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per size (each times every request)")
    args = parser.parse_args(argv)
    logging.getLogger("lifecycle").setLevel(logging.ERROR)
    print("| framework | services | request | median us/request | min-max over rounds | x baseline |")
    print("|---|---|---|---|---|---|")
    for framework, build in (("Flask", flask_calls), ("Django", django_calls)):
        for n in (int(size) for size in args.sizes.split(",")):
            calls, close = build(n)
            try:
                samples = measure(calls, args.rounds)
            finally:
                close()
            base = statistics.median(samples["baseline: empty view"])
            for name, values in samples.items():
                median = statistics.median(values)
                print(f"| {framework} | {n:,} | {name} | {median:.1f} | {min(values):.1f}-{max(values):.1f} "
                      f"| {median / base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
