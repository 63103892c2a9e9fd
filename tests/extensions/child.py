"""A small extension process for the transport tests, speaking the line protocol on stdout.

    python child.py MODE [SECONDS]

steady: a `heartbeat` line every SECONDS (default 0.05), answering `ping` on stdin with `pong`.
crash: heartbeats, then exits with code 3 after SECONDS.
hang: heartbeats, then stops writing (still alive) after SECONDS.
stubborn: heartbeats and ignores SIGTERM.
family: heartbeats and starts a grandchild that sleeps (a process group of two).
chatty: one `hello` line on stdout and one `oops` line on stderr, then heartbeats.
silent: never writes; just lives.
relapse: the first run heartbeats for 0.3 s and
    exits with code 3; every later run exits with code 3 at once, before any heartbeat.
    Usage: child.py relapse COUNTFILE
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


def relapse(path: str) -> None:
    runs = 1
    if os.path.exists(path):
        with open(path) as f:
            runs = int(f.read() or 0) + 1
    with open(path, "w") as f:
        f.write(str(runs))
    if runs > 1:
        sys.exit(3)
    os.execv(sys.executable, [sys.executable, __file__, "crash", "0.3"])


def main() -> None:
    mode = sys.argv[1]
    if mode == "relapse":
        relapse(sys.argv[2])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    interval = 0.05 if mode in ("crash", "hang") else seconds
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "family":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if mode == "chatty":
        print("hello", flush=True)
        print("oops", file=sys.stderr, flush=True)
    if mode == "silent":
        interval = 3600.0
    started = time.monotonic()
    os.set_blocking(0, False)
    pending = b""
    while True:
        elapsed = time.monotonic() - started
        if mode == "crash" and elapsed >= seconds:
            sys.exit(3)
        hung = mode == "hang" and elapsed >= seconds
        if mode != "silent" and not hung:
            sys.stdout.write("heartbeat\n")
            sys.stdout.flush()
        ready, _, _ = select.select([0], [], [], interval)
        if ready:
            data = os.read(0, 4096)
            if not data:
                return  # the host went away: stdin closed
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip() == b"ping" and not hung:
                    sys.stdout.write("pong\n")
                    sys.stdout.flush()


if __name__ == "__main__":
    main()
