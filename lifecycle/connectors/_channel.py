"""One connected service as the I/O thread sees it: the line protocol, pings, and reports to its manager.

The protocol, per line (UTF-8, ``\\n``-terminated, surrounding whitespace ignored): ``heartbeat``
is a heartbeat for the service; ``ping`` is answered with ``pong``; ``pong`` answers our ping;
anything else is logged on the ``lifecycle`` logger, tagged with the service.

Locking: `cond` guards only the pong counter and the write side; no lock is held while the
manager is called (it emits signals to user receivers).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from ..errors import LifecycleError
from ..model import ExtensionService, ServiceStatus
from ._loop import LOOP

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["MAX_LINE", "Channel"]

log = logging.getLogger("lifecycle")

#: Longer lines are cut here (and logged), so a peer that never sends a newline cannot grow memory.
MAX_LINE = 65536
_READ_SIZE = 65536
#: How often an exit report that could not land yet (the service is still STARTING, or a
#: reconnect is in flight) is retried.
_REPORT_RETRY = 0.05


class Channel:
    """Base of a process or socket channel: line parsing, heartbeats, pings, the error report.

    Subclasses set up their fds, call `watch(fd, stream)` for each readable one on the I/O
    thread, and implement `_write`, `_close_fds` and (for processes) the exit handling.
    """

    kind = "channel"
    detail = ""  # what the label adds, e.g. the child's pid

    def __init__(self, manager: LifecycleManager, service: ExtensionService, current: Any) -> None:
        self.manager = manager
        self.service_id = service.id
        self.name = service.name
        self.timeout = float(service.transport.timeout_secs)
        # `current(service_id)` answers the channel now connected for the service, so a report
        # of a channel that was replaced meanwhile is dropped.
        self._current = current
        self.closing = False  # set by disconnect: an end is expected and not reported
        self.closed = False  # fds closed (I/O thread)
        self.cond = threading.Condition(threading.Lock())
        # Set on the first heartbeat line, or when the channel closes (then `ended` says why).
        self.ready = threading.Event()
        self.ended: str | None = None
        self._pongs = 0
        self._buffers: dict[int, bytearray] = {}
        self._watched: dict[int, str] = {}
        self.owner_pid = os.getpid()

    def label(self) -> str:
        return f"{self.name!r} ({self.service_id}{self.detail})"

    # -- what a channel kind provides ------------------------------------------------------

    def start(self) -> None:
        """On the I/O thread: watch the channel's fds (nothing if it was closed meanwhile)."""
        raise NotImplementedError

    def begin_terminate(self) -> None:
        """Ask the other end to stop, without waiting (a child: SIGTERM; a socket: shutdown)."""
        raise NotImplementedError

    def terminate(self, grace: float) -> None:
        """Stop the other end: ask, wait up to `grace` seconds, then force; a child is reaped."""
        raise NotImplementedError

    def forget_after_fork(self) -> None:
        """In a forked child: close this process's copies of the fds; the parent keeps the channel."""
        raise NotImplementedError

    # -- I/O thread side ------------------------------------------------------------------

    def watch(self, fd: int, stream: str) -> None:
        """On the I/O thread: read `fd` line by line; `stream` names it in logs."""
        self._buffers[fd] = bytearray()
        self._watched[fd] = stream
        LOOP.register(fd, lambda: self._on_readable(fd, stream))

    def _on_readable(self, fd: int, stream: str) -> None:
        data = self._read(fd)
        if data is None:
            return  # spurious wake-up
        if not data:
            self._on_eof(fd, stream)
            return
        self._feed(fd, data, stream)

    def _read(self, fd: int) -> bytes | None:
        raise NotImplementedError

    def _feed(self, fd: int, data: bytes, stream: str) -> None:
        buffer = self._buffers[fd]
        if b"\n" in data:
            buffer += data
            *lines, rest = bytes(buffer).split(b"\n")
            buffer[:] = rest
            line = self._line
            for raw in lines:
                line(raw, stream)
        else:
            buffer += data
        if len(buffer) > MAX_LINE:
            self._line(bytes(buffer[:MAX_LINE]), stream)
            log.warning("lifecycle: %s sent a line longer than %d bytes on %s; cut", self.label(), MAX_LINE, stream)
            buffer.clear()

    def _flush(self, fd: int, stream: str) -> None:
        buffer = self._buffers.get(fd)
        if buffer:
            self._line(bytes(buffer), stream)
            buffer.clear()

    def _line(self, raw: bytes, stream: str) -> None:
        line = raw.strip()
        if line == b"heartbeat" and stream != "stderr":
            self._report_heartbeat()
        elif line == b"pong" and stream != "stderr":
            with self.cond:
                self._pongs += 1
                self.cond.notify_all()
        elif line == b"ping" and stream != "stderr":
            try:
                self._write(b"pong\n")
            except OSError as exc:
                log.debug("lifecycle: answering the ping of %s failed: %s", self.label(), exc)
        elif line:
            text = line.decode("utf-8", "replace")
            level = logging.WARNING if stream == "stderr" else logging.INFO
            log.log(level, "lifecycle: [%s %s] %s", self.name, stream, text,
                    extra={"service_id": str(self.service_id), "service": self.name, "stream": stream})

    def _on_eof(self, fd: int, stream: str) -> None:
        raise NotImplementedError

    def close_fds(self) -> None:
        """On the I/O thread: stop watching and close every fd; idempotent."""
        if self.closed:
            return
        self.closed = True
        for fd, stream in self._watched.items():
            self._flush(fd, stream)
            LOOP.unregister(fd)
        self._watched.clear()
        self._close_fds()
        with self.cond:
            self.cond.notify_all()  # a waiting ping fails at once
        self.ready.set()

    def _close_fds(self) -> None:
        raise NotImplementedError

    # -- reports to the manager (no lock held) ----------------------------------------------

    def _report_heartbeat(self) -> None:
        if not self.ready.is_set():
            self.ready.set()
        try:
            self.manager.handle_heartbeat(self.service_id)
        except LifecycleError as exc:
            # Stopped, stopping, or the manager shut down: this line has no one to go to.
            log.debug("lifecycle: heartbeat of %s not recorded: %s", self.label(), exc)
        except Exception:
            log.exception("lifecycle: recording a heartbeat of %s failed", self.label())

    def end_by_itself(self, text: str) -> None:
        """On the I/O thread: the other end went away; close our side and report it (`report_end`)."""
        self.ended = text  # before close_fds wakes anyone waiting for readiness
        self.close_fds()
        self.report_end(text)

    def report_end(self, text: str) -> None:
        """On the I/O thread: the connection or process ended on its own; tell the manager at once.

        `handle_error` can only take effect on a RUNNING (or ERROR) service. While the service is
        STARTING (its connect has not returned yet) or RECONNECTING (a reconnect is in flight
        that may bring it back with no live connection), the report is retried shortly, until it
        lands or the channel is replaced, stopped or forgotten.
        """
        if self.closing:
            return
        log.warning("lifecycle: %s: %s", self.label(), text)
        self._try_report(text)

    def _try_report(self, text: str) -> None:
        if self.closing or self._current(self.service_id) is not self:
            return
        status = self.manager.get_status(self.service_id)
        if status is None or status is ServiceStatus.STOPPING or status is ServiceStatus.STOPPED:
            return
        if status is ServiceStatus.RUNNING:
            try:
                self.manager.handle_error(self.service_id, text)
                return
            except LifecycleError as exc:
                log.debug("lifecycle: error report of %s not taken yet: %s", self.label(), exc)
            except Exception:
                log.exception("lifecycle: reporting the end of %s failed", self.label())
                return
        elif status is ServiceStatus.ERROR:
            return  # already failed; a later reconnect replaces this channel
        LOOP.call_later(_REPORT_RETRY, lambda: self._try_report(text))

    # -- any thread ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        """Send ``ping`` and wait up to the transport timeout for ``pong``; raise if none comes."""
        with self.cond:
            if self.closed or self.closing:
                raise ConnectionError(f"service {self.label()} is not connected")
            before = self._pongs
        self._write(b"ping\n")
        with self.cond:
            # Condition.wait_for keeps real time even under freezegun (threading is on its ignore list).
            self.cond.wait_for(lambda: self._pongs != before or self.closed, self.timeout)
            if self._pongs == before:
                if self.closed:
                    raise ConnectionError(f"service {self.label()} disconnected before answering the ping")
                raise TimeoutError(f"service {self.label()} did not answer the ping within {self.timeout:g} s")
