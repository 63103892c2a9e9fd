"""A stand-alone extension process: heartbeats to the app over HTTP until it is killed.

    python examples/extension_client.py --url http://127.0.0.1:5000/lifecycle [--service ID]
        [--interval SECONDS] [--token TOKEN]

Kill it (Ctrl+C, or `kill -9`) and the app marks the service ERROR once the heartbeat timeout
passes; start it again and the next heartbeat brings the service back to RUNNING. The token
defaults to $LIFECYCLE_HEARTBEAT_TOKEN. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import urllib.error
import urllib.request


def beat(url: str, token: str | None, timeout: float) -> str:
    """POST one heartbeat; return what happened in a few words."""
    request = urllib.request.Request(url, method="POST", data=b"")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(response.status)
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode('utf-8', 'replace')}"
    except (urllib.error.URLError, OSError) as error:
        return f"unreachable ({getattr(error, 'reason', error)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000/lifecycle", help="the app's lifecycle endpoints")
    parser.add_argument("--service", default="example-extension", help="the service id to heartbeat for")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between heartbeats")
    parser.add_argument("--token", default=os.environ.get("LIFECYCLE_HEARTBEAT_TOKEN"), help="bearer token")
    args = parser.parse_args(argv)
    url = f"{args.url.rstrip('/')}/services/{urllib.request.quote(args.service, safe='')}/heartbeat"
    print(f"extension {args.service} (pid {os.getpid()}): heartbeat to {url} every {args.interval} s", flush=True)
    stop = threading.Event()
    last = None
    try:
        while True:
            result = beat(url, args.token, timeout=max(args.interval, 1.0))
            if result != last:  # print changes only, not every beat
                print(f"heartbeat: {result}", flush=True)
                last = result
            if result.startswith(("401", "403")):
                return 2
            stop.wait(args.interval)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
