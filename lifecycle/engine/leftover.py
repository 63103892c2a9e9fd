"""Ending a child an earlier owner left on this host: found by pid and /proc start time, never a reused pid.

An owner records what it holds with its ownership, 'host,pid,start,child pid,child start': itself
(so a child it spawned and has not recorded yet can be found: any child of it whose environment
names the service) and its live child ('' for none). A new owner on the same host reads that
record on its fresh grant and ends what is left (an owner paused past its lease still has a
live child) before it spawns its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time

from ..model import SERVICE_ID_VARIABLE

__all__ = ["end_leftovers", "start_time"]

log = logging.getLogger("lifecycle")

_WAIT = 2.0  # how long a new owner waits for a leftover child it killed to be gone
_EXEC_READS = 20  # reads of an empty environment (an exec under way) before it counts as none


def start_time(pid: int) -> str | None:
    """A live process's start time (/proc/<pid>/stat field 22, ticks since boot): with the pid, its identity."""
    stat = _stat(pid)
    return None if stat is None or stat[0] in (b"Z", b"X") else stat[19].decode()


def _stat(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat from field 3 (state) on; None when gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None  # gone, or no /proc here: nothing can be verified
    return stat[stat.rindex(b")") + 2:].split()  # the name may hold spaces and parentheses


def end_leftovers(record: str, host: str, service_id: str) -> list[int]:
    """End what an earlier owner's `record` leaves on `host` (this member's) for `service_id`; the pids ended."""
    fields = record.split(",")
    if len(fields) != 5 or fields[0] != host or fields[1] == str(os.getpid()):
        return []  # none recorded, on another host, or ours (we end our own children)
    ended = []
    if fields[3].isdigit() and _end(int(fields[3]), fields[4]):
        ended.append(int(fields[3]))
    if fields[1].isdigit() and start_time(owner := int(fields[1])) == fields[2]:
        # That owner lives (paused, say): a child it had not recorded yet. Gone, its children died with it.
        ended += [child for child in _children_of(owner, service_id) if _end(child, start_time(child))]
    return ended


def _children_of(parent: int, service_id: str) -> list[int]:
    """The live children of process `parent` whose environment names `service_id` (spawned for it)."""
    marker = f"{SERVICE_ID_VARIABLE}={service_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        stat = _stat(int(entry)) if entry.isdigit() else None
        if stat is None or stat[1] != str(parent).encode():
            continue
        if marker in _environ(entry):
            found.append(int(entry))
    return found


def _environ(pid: str) -> list[bytes]:
    """A process's environment; [] when gone or not ours to read."""
    for _ in range(_EXEC_READS):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            return []
        if environ:
            return environ.split(b"\0")
        # Empty while the process is in the middle of an exec (a shell exec-ing the real command):
        # read again shortly, or a child caught at that moment would be missed.
        time.sleep(0.005)
    return []


def _end(pid: int, started: str | None) -> bool:
    """SIGKILL process `pid` (and its group) if it is still the one started at `started`; wait until it is gone."""
    if started is None:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False  # gone already
    try:
        if start_time(pid) != started:
            return False  # the pid was reused (or the child is a zombie): not ours to end
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # its own group (start_new_session): grandchildren too
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # readable once the process exited
        poller.poll(_WAIT * 1000)
        return True
    finally:
        os.close(fd)
