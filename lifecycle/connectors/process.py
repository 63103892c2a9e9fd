"""`SubprocessConnector`: a STDIO service is a child process speaking the line protocol on stdout.

Each child runs in its own session (so its process group can be signalled as a whole), with
stdin, stdout and stderr on pipes this process owns. Its exit is seen through a pidfd (or, where
there is none, by polling), reaped at once, and reported to the manager with the exit code or
signal. Reaping and signalling are serialised per child, so a signal never reaches a pid the
kernel may have reused.

No child outlives this process, however it ends (see `_spawn_guard`): on Linux the kernel
SIGKILLs it when the thread that spawned it exits, and that thread is the I/O thread, which
lives exactly as long as some child's exit is watched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..model import SERVICE_ID_VARIABLE, ExtensionService, ServiceId
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
_SPAWN_WAIT = 30.0  # for the I/O thread to spawn a child; longer only while a receiver blocks it
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> object | None:
    """libc's prctl, resolved once here: the forked child must not load a library before exec."""
    if os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _spawn_guard(parent: int) -> None:
    """In the forked child, before exec: die with SIGKILL when the spawning thread ends.

    Why this and not the alternatives: a pipe the child watches needs the child's cooperation
    (an arbitrary command never reads it), and a process group is signalled only by a parent
    that still runs code (a SIGKILLed one runs none). PR_SET_PDEATHSIG is delivered by the
    kernel whatever ends the parent, SIGKILL and OOM included, and survives a plain exec. It
    fires when the spawning *thread* exits, so children are spawned on the I/O thread, which
    ends only when no child's exit is watched any more (pool and request threads come and go).
    A parent that died before the prctl would never send it: the parent pid check covers that.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # type: ignore[operator]
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


class SubprocessConnector(LineConnector):
    """Keeps a STDIO service's command running: spawn on `connect`, SIGTERM/SIGKILL and reap on `disconnect`.

    `transport.command` plus `args` is run with `env` added to this process's environment (and
    LIFECYCLE_SERVICE_ID, the service's id) and `cwd`. A ``heartbeat`` line on its stdout is a
    heartbeat; other stdout lines are logged at INFO and stderr lines at WARNING on the
    ``lifecycle`` logger. Its exit is reported at once as a `service_error` naming the exit code
    or signal, so the manager respawns it with backoff.
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
        self.pidfd = -1
        self.pid = 0
        self.proc: subprocess.Popen[bytes]  # set by _spawn
        self._argv = [transport.command, *transport.args]
        self._env = {**os.environ, **transport.env, SERVICE_ID_VARIABLE: service.id}  # see engine/leftover.py
        self._cwd = transport.cwd
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.stdin, self.stdout, self.stderr = in_w, out_r, err_r
        try:
            _on_io_thread(lambda: self._spawn(in_r, out_w, err_w))
        except BaseException:
            spawned: subprocess.Popen[bytes] | None = getattr(self, "proc", None)
            if spawned is not None:  # spawned, but not watched: nothing may hold it
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
                spawned.wait()
            for fd in {in_w, out_r, err_r, *self._fds}:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        log.info("lifecycle: started %s as process %d", self.label(), self.pid)

    def _spawn(self, in_r: int, out_w: int, err_w: int) -> None:
        """On the I/O thread: start the child and watch it, in one step, so the thread outlives it."""
        proc = self.proc = subprocess.Popen(
            self._argv, stdin=in_r, stdout=out_w, stderr=err_w, env=self._env, cwd=self._cwd,
            close_fds=True, start_new_session=True, preexec_fn=_guard_for(os.getpid()),
        )
        self.pid = proc.pid
        self.detail = f", pid {self.pid}"
        for fd in (self.stdin, self.stdout, self.stderr):
            os.set_blocking(fd, False)
            self._fds.add(fd)
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(self.pid)
            self._fds.add(self.pidfd)
        # Watched before this step ends: from here the I/O thread cannot end while the child lives.
        self.watch(self.stdout, "stdout")
        self.watch(self.stderr, "stderr")
        if self.pidfd >= 0:
            LOOP.register(self.pidfd, self._on_exit)
        else:
            LOOP.call_later(_POLL_EXIT, self._poll_exit)

    # -- I/O thread --------------------------------------------------------------------------------

    def start(self) -> None:
        """Nothing left to do: `_spawn` watches the child in the same I/O-thread step that starts it."""

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


def _guard_for(parent: int) -> Callable[[], None]:
    return lambda: _spawn_guard(parent)


def _on_io_thread(fn: Callable[[], None]) -> None:
    """Run `fn` on the I/O thread and wait for it; re-raise what it raised there."""
    done = threading.Event()
    lock = threading.Lock()
    state: dict[str, object] = {}

    def op() -> None:
        with lock:
            if state.get("abandoned"):
                return  # the caller gave up waiting: spawning now would leave a child nobody holds
            state["running"] = True
        try:
            fn()
        except BaseException as exc:
            state["error"] = exc
        finally:
            done.set()

    LOOP.run_here_or_soon(op)
    if not done.wait(_SPAWN_WAIT):
        with lock:
            if not state.get("running"):
                state["abandoned"] = True
                raise ConnectionError(f"the I/O thread did not spawn the child within {_SPAWN_WAIT:g} s")
        done.wait()
    error = state.get("error")
    if isinstance(error, BaseException):
        raise error


def describe_exit(pid: int, code: int) -> str:
    """'process 12 exited with code 3' or 'process 12 was killed by signal SIGKILL'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"process {pid} was killed by signal {name}"
    return f"process {pid} exited with code {code}"
