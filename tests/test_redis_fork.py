"""The choice of a Redis client survives a fork made while another thread was choosing.

A preloaded gunicorn master's threads (its event-log reader, its watchdog) may be choosing the
client, a round trip under a lock, when the master forks a worker; the worker's manager, whose
at-fork hook runs before any hook `lifecycle.redis` registers, restarts threads that call the
registry at once. Each must get an answer, not wait for good on the parent's lock.

The scenario runs in a process of its own (its hooks registered in that order), against a
socket that accepts connections and never answers, so the parent's choice is surely under way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("redis")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = r"""
import os, socket, sys, threading

answers = []

def call_in_a_thread():
    # As a manager's after-fork hook does: a thread that calls the registry at once.
    def call():
        try:
            registry.count()
        except Exception as exc:
            answers.append(type(exc).__name__)
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    answers.append(caller)

os.register_at_fork(after_in_child=call_in_a_thread)  # before lifecycle.redis registers any hook

from lifecycle.redis import RedisRegistry

silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen(16)  # connections complete in the backlog; nothing ever answers
registry = RedisRegistry.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", namespace="fork",
                                  socket_timeout=2.0, socket_connect_timeout=2.0)
threading.Thread(target=lambda: answers.append(registry.count()), daemon=True).start()
silent.accept()  # the parent's thread is connected: it is choosing the client, under the lock
pid = os.fork()
if pid == 0:
    caller = answers[0]
    caller.join(30.0)
    os._exit(0 if not caller.is_alive() and answers[1:] == ["RegistryUnavailable"] else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_a_thread_was_choosing_the_client_gets_an_answer() -> None:
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, f"the child's call never returned or failed otherwise:\n{done.stderr}"


def test_the_host_codec_is_loaded_with_the_registry_before_any_fork() -> None:
    """A preloaded master's first connection, on a thread of its own, would import the idna codec while
    gunicorn forks; a worker forked mid-import could never encode a host again ("unknown encoding: idna")."""
    check = "import sys, lifecycle.redis; sys.exit(0 if 'encodings.idna' in sys.modules else 1)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stderr
