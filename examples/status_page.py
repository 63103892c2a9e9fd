"""The status page with a few demo services: run it and open http://127.0.0.1:5000/lifecycle/.

    python examples/status_page.py                  # serve until Ctrl-C
    python examples/status_page.py --screenshot docs/img/status-page.png

Three services heartbeat, one falls silent and its reconnects keep failing, one reports an
error and does not reconnect. `--screenshot` takes a picture of the page with headless
Chromium (needs `chromium`, `chromium-driver` and selenium) and exits.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flask import Flask

from lifecycle import ExtensionService, TransportConfig
from lifecycle.contrib.flask import Lifecycle

HEALTHY = ("search-indexer", "thumbnailer", "payments-webhook")


class DemoConnector:
    """Connects every service, except those named in `broken` once they have started."""

    def __init__(self) -> None:
        self.broken: set[str] = set()

    def connect(self, service: ExtensionService) -> None:
        if service.name in self.broken:
            raise ConnectionRefusedError(f"{service.name}: connection refused (127.0.0.1:7411)")


def build() -> tuple[Flask, threading.Event]:
    """The app, its demo services started, and the Event that stops their heartbeats."""
    connector = DemoConnector()
    app = Flask("status_page_demo")
    app.config.update(
        LIFECYCLE_HEARTBEAT_INTERVAL_SECS=1,
        LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=2,
        LIFECYCLE_RECONNECT_DELAY_MS=800,
        LIFECYCLE_MAX_RECONNECT_ATTEMPTS=5,
    )
    manager = Lifecycle(app, connector=connector).get_manager(app)
    ids = [manager.start_service(ExtensionService(name, "2.4.1")) for name in HEALTHY]
    manager.start_service(ExtensionService("ocr-worker", "0.9.0"))
    connector.broken.add("ocr-worker")  # it falls silent, and reconnecting fails
    mailer = manager.start_service(ExtensionService("mailer", "1.2.0", transport=TransportConfig(auto_reconnect=False)))
    manager.handle_error(mailer, "SMTP 421: too many connections from this host")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.5):
            for id in ids:
                manager.handle_heartbeat(id)

    threading.Thread(target=beat, daemon=True).start()
    return app, stop


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def screenshot(url: str, path: str, width: int, height: int) -> None:
    """Save a PNG of `url` as headless Chromium renders it once the table is filled."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="lifecycle-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.querySelectorAll('#services tbody tr').length") == 5
        )
        driver.save_screenshot(path)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the page and exit")
    parser.add_argument("--size", default="1200x900", help="window size for --screenshot, e.g. 390x1100")
    parser.add_argument("--wait", type=float, default=7.0, help="seconds to let the demo run before --screenshot")
    args = parser.parse_args()
    app, stop = build()
    server = make_server("127.0.0.1", 0 if args.screenshot else args.port, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/lifecycle/"
    try:
        if args.screenshot:
            time.sleep(args.wait)  # a demo, not a test: let the silent service fail a few reconnects
            width, height = (int(n) for n in args.size.split("x"))
            screenshot(url, args.screenshot, width, height)
        else:
            print(f"status page: {url}  (Ctrl-C to stop)")
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.shutdown()
        app.extensions["lifecycle"].shutdown(2.0)


if __name__ == "__main__":
    main()
