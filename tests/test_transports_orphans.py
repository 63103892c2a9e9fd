"""No orphans: a STDIO child never outlives the process that spawned it, however that process ends.

A real process tree: this test starts a host Python process, the host starts a child through
`SubprocessConnector` and prints its pid, the test ends the host (SIGKILL, SIGTERM with its
default action) and polls /proc, with a deadline, until the child is gone.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from transport_support import WAIT, proc_state, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")

_HOST = """
import sys, threading
sys.path.insert(0, {tests!r})
from lifecycle import LifecycleManager
from lifecycle.connectors import SubprocessConnector
from transport_support import shell_service
c = SubprocessConnector()
m = LifecycleManager(connector=c, autostart={autostart})
sids = []
def start():
    # sh never reads its stdin, so the end of our pipe tells it nothing: only the kernel ends it.
    sids.append(m.start_service(shell_service('kept', 'echo heartbeat; exec sleep 600')))
if {from_thread}:
    # A short-lived thread spawns: the child must outlive it and die only with the process.
    t = threading.Thread(target=start)
    t.start()
    t.join()
else:
    start()
print(c.pid(sids[0]), flush=True)
sys.stdin.read()  # until the test ends us
"""


def _host(tmp_path: Path, *, from_thread: bool = False, autostart: bool = True) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "host.py"
    script.write_text(_HOST.format(tests=str(Path(__file__).parent), from_thread=from_thread, autostart=autostart))
    host = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert host.stdout is not None
    ready, _, _ = select.select([host.stdout], [], [], WAIT * 3)
    if not ready:
        host.kill()
        host.wait()
        raise AssertionError("the host printed no child pid")
    line = host.stdout.readline()
    assert line.strip().isdigit(), f"the host said {line!r}"
    return host, int(line)


def _cleanup(host: subprocess.Popen[str], child: int) -> None:
    """Whatever the outcome, leave no host and no child behind (a failing run would orphan it)."""
    if host.poll() is None:
        host.kill()
        host.wait()
    if not _gone(child):
        os.kill(child, signal.SIGKILL)


def _gone(pid: int) -> bool:
    return proc_state(pid) in (None, "Z")


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_child_dies_with_the_process_that_spawned_it(tmp_path: Path, how: signal.Signals):
    host, child = _host(tmp_path)
    try:
        assert _parent_of(child) == host.pid and not _gone(child)
        os.kill(host.pid, how)
        assert host.wait(WAIT) == -how
        wait_until(lambda: _gone(child), what=f"child {child} of the {how.name}ed host to be gone")
    finally:
        _cleanup(host, child)


@pytest.mark.parametrize("autostart", [True, False], ids=["threads", "manual"])
def test_a_child_spawned_from_a_short_lived_thread_lives_until_its_process_dies(tmp_path: Path, autostart: bool):
    # PR_SET_PDEATHSIG fires when the spawning *thread* ends: the spawn must not happen on the caller's.
    host, child = _host(tmp_path, from_thread=True, autostart=autostart)
    try:
        # The thread that called start_service has ended; the child is still the host's and alive.
        assert _parent_of(child) == host.pid and proc_state(child) in ("R", "S")
        os.kill(host.pid, signal.SIGKILL)
        host.wait(WAIT)
        wait_until(lambda: _gone(child), what=f"child {child} of the SIGKILLed host to be gone")
    finally:
        _cleanup(host, child)


_WORKERS = """
import logging, os, sys
sys.path.insert(0, {tests!r})
from lifecycle import LifecycleManager
from lifecycle.connectors import SubprocessConnector
from transport_support import shell_service
said = []
class Count(logging.Handler):
    def emit(self, record):
        if 'supervises its own copy' in record.getMessage():
            said.append(record.getMessage())
logging.getLogger('lifecycle').addHandler(Count())
logging.getLogger('lifecycle').setLevel(logging.INFO)
c = SubprocessConnector()
m = LifecycleManager(connector=c)
m.start_service(shell_service('a', 'echo heartbeat; exec sleep 600'))
m.start_service(shell_service('b', 'echo heartbeat; exec sleep 600'))
child = os.fork()  # a web server's worker: its own process, its own copy
if child == 0:
    said.clear()
    w = LifecycleManager(connector=SubprocessConnector())
    w.start_service(shell_service('c', 'echo heartbeat; exec sleep 600'))
    w.start_service(shell_service('d', 'echo heartbeat; exec sleep 600'))
    w.shutdown()
    print('worker', len(said), flush=True)
    os._exit(0)
os.waitpid(child, 0)
m.shutdown()
print('first', len(said), said[0] if said else '', flush=True)
"""


def test_in_memory_each_process_says_once_that_it_supervises_its_own_copy(tmp_path: Path):
    script = tmp_path / "workers.py"
    script.write_text(_WORKERS.format(tests=str(Path(__file__).parent)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["worker"] == "1"
    count, text = lines["first"].split(" ", 1)
    assert count == "1" and "process " in text and "'a'" in text and "fleet mode" in text
