"""`SubprocessConnector`: a STDIO service is a child process speaking the line protocol on stdout.

Each child runs in its own session (so its process group can be signalled as a whole), with
stdin, stdout and stderr on pipes this process owns. Its exit is seen through a pidfd (or, where
there is none, by polling), reaped at once, and reported to the manager with the exit code or
signal. Reaping and signalling are serialised per child, so a signal never reaches a pid the
kernel may have reused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from ..model import ExtensionService, ServiceId
from ._base import LineConnector
from ._channel import Channel
from ._loop import LOOP, real_now

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["SubprocessConnector"]

log = logging.getLogger("lifecycle")

_READ_SIZE = 65536
_POLL_EXIT = 0.2  # where no pidfd exists, how often the I/O thread looks for the child's exit
_KILL_WAIT = 5.0  # after SIGKILL; only a child stuck in the kernel takes longer


class SubprocessConnector(LineConnector):
    """Keeps a STDIO service's command running: spawn on `connect`, SIGTERM/SIGKILL and reap on `disconnect`.

    `transport.command` plus `args` is run with `env` added to this process's environment and
    `cwd`. A ``heartbeat`` line on its stdout is a heartbeat; other stdout lines are logged at
    INFO and stderr lines at WARNING on the ``lifecycle`` logger. Its exit is reported at once
    as a `service_error` naming the exit code or signal, so the manager respawns it with backoff.
    """

    transport = "process"
    process_bound = True

    def _await_ready(self, channel: Channel) -> None:
        # Like systemd's READY=1: a child that dies or stays silent before its first heartbeat
        # line fails this attempt, so a crash loop at startup backs off and finally gives up.
        ready = channel.ready.wait(channel.timeout)
        if ready and channel.ended is None:
            return
        reason = channel.ended or f"wrote no heartbeat line within {channel.timeout:g} s of starting"
        raise ConnectionError(f"service {channel.label()}: {reason}")

    def pid(self, service_id: str) -> int | None:
        """The pid of the service's child in this process, or None."""
        channel = self._current(ServiceId(service_id))
        return channel.pid if isinstance(channel, ProcessChannel) and not channel.closed else None

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        return ProcessChannel(manager, service, self._current)


class ProcessChannel(Channel):
    """One child process: its pipes, its pidfd, its exit."""

    kind = "process"

    def __init__(self, manager: LifecycleManager, service: ExtensionService, current: object) -> None:
        super().__init__(manager, service, current)
        transport = service.transport
        if not transport.command:
            raise ValueError(f"service {service.name!r}: TransportConfig.command is required for the STDIO transport")
        for key, value in transport.env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"service {service.name!r}: TransportConfig.env must map str to str, got {key!r}")
        self._proc_lock = threading.Lock()
        self._fds: set[int] = set()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [transport.command, *transport.args],
                stdin=in_r, stdout=out_w, stderr=err_w,
                env={**os.environ, **transport.env}, cwd=transport.cwd,
                close_fds=True, start_new_session=True,
            )
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self.pid = self.proc.pid
        self.detail = f", pid {self.pid}"
        self.stdin, self.stdout, self.stderr = in_w, out_r, err_r
        for fd in (in_w, out_r, err_r):
            os.set_blocking(fd, False)
            self._fds.add(fd)
        self.pidfd = -1
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(self.pid)
            self._fds.add(self.pidfd)
        log.info("lifecycle: started %s as process %d", self.label(), self.pid)

    # -- I/O thread --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.closed:
            return
        self.watch(self.stdout, "stdout")
        self.watch(self.stderr, "stderr")
        if self.pidfd >= 0:
            LOOP.register(self.pidfd, self._on_exit)
        else:
            LOOP.call_later(_POLL_EXIT, self._poll_exit)

    def _read(self, fd: int) -> bytes | None:
        try:
            return os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _on_eof(self, fd: int, stream: str) -> None:
        # The child closed one of its pipes; its exit, not this, is what ends the channel.
        self._flush(fd, stream)
        LOOP.unregister(fd)
        self._watched.pop(fd, None)
        self._close(fd)

    def _poll_exit(self) -> None:
        if self.closed:
            return
        if self._exited():
            self._on_exit()
        else:
            LOOP.call_later(_POLL_EXIT, self._poll_exit)

    def _on_exit(self) -> None:
        """The child exited: end what is left of its group, reap it, read its last lines, report."""
        with self._proc_lock:
            if self.proc.returncode is None:
                # The zombie still holds its pid, so the group id cannot have been reused yet.
                self._signal_group(signal.SIGTERM)
                self.proc.poll()
            code = self.proc.returncode
        if code is None:
            return  # not reaped yet (cannot happen with a readable pidfd); the next wake-up retries
        for fd, stream in list(self._watched.items()):
            for _ in range(16):  # what it wrote just before exiting, bounded
                data = self._read(fd)
                if not data:
                    break
                self._feed(fd, data, stream)
        self.end_by_itself(describe_exit(self.pid, code))

    def _close_fds(self) -> None:
        if self.pidfd >= 0:
            LOOP.unregister(self.pidfd)
        for fd in list(self._fds):
            self._close(fd)
        if self.proc.returncode is None and not self.closing:
            log.warning("lifecycle: %s still runs while its pipes are closed", self.label())

    def _close(self, fd: int) -> None:
        # Under `cond`, so a writer never writes to a number the kernel has handed out again.
        with self.cond:
            if fd in self._fds:
                self._fds.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- any thread ----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self.cond:
            if self.stdin not in self._fds:
                raise ConnectionError(f"the stdin of {self.label()} is closed")
            written = os.write(self.stdin, data)  # a few bytes: atomic on a pipe (< PIPE_BUF)
        if written != len(data):
            raise ConnectionError(f"the stdin of {self.label()} is full")

    def begin_terminate(self) -> None:
        with self._proc_lock:
            if self.proc.returncode is None:
                self._signal_group(signal.SIGTERM)

    def terminate(self, grace: float) -> None:
        """SIGTERM to the child's group, up to `grace` seconds for it to exit, SIGKILL, reap."""
        self.begin_terminate()
        if not self._wait_exit(grace):
            if grace > 0:
                log.warning("lifecycle: %s did not exit within %.3g s of SIGTERM; sending SIGKILL",
                            self.label(), grace)
            with self._proc_lock:
                if self.proc.returncode is None:
                    self._signal_group(signal.SIGKILL)
            if not self._wait_exit(_KILL_WAIT):
                log.error("lifecycle: %s did not exit after SIGKILL", self.label())
                return
        with self._proc_lock:
            if self.proc.returncode is None:
                self._signal_group(signal.SIGKILL)  # whatever of its group is left
                self.proc.poll()

    def forget_after_fork(self) -> None:
        for fd in list(self._fds):
            self._close(fd)
        self.closed = True

    def _exited(self) -> bool:
        """True once the child has exited (reaped or not); never reaps it."""
        if self.proc.returncode is not None:
            return True
        if not hasattr(os, "waitid"):  # macOS: no way to peek, so reap (pid reuse is then possible)
            return self.proc.poll() is not None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # reaped by someone else
        return info is not None

    def _wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` real seconds for the child to exit (without reaping it)."""
        with self._proc_lock:
            # Reaping happens only under this lock, so the pid is still this child's here.
            if self._exited():
                return True
            try:
                pidfd = os.pidfd_open(self.pid)
            except (AttributeError, OSError):
                pidfd = -1
        if pidfd < 0:  # no pidfd: poll, as Popen.wait does
            end = real_now() + timeout
            pause = 0.0005
            while not self._exited():
                left = end - real_now()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.05)
            return True
        try:
            # A pidfd turns readable when the process exits: no polling, real time.
            poller = select.poll()  # not select.select: descriptors may be above FD_SETSIZE
            poller.register(pidfd, select.POLLIN)
            poller.poll(max(0.0, timeout) * 1000)
        finally:
            os.close(pidfd)
        return self._exited()

    def _signal_group(self, sig: signal.Signals) -> None:
        """Call with `_proc_lock` held and the child not reaped."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def describe_exit(pid: int, code: int) -> str:
    """'process 12 exited with code 3' or 'process 12 was killed by signal SIGKILL'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"process {pid} was killed by signal {name}"
    return f"process {pid} exited with code {code}"
