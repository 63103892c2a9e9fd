"""A guided tour of `lifecycle`: simulated services that stay up, flap, doze off and vanish."""

# Run it with ``python -m lifecycle demo`` (or the ``lifecycle-demo`` script). One LifecycleManager
# watches a handful of pretend extension services for about 15 seconds:
#
# - ``steady-N`` heartbeat every interval for the whole run and stay RUNNING;
# - ``flaky`` reports "connection reset"; its next 2 connects fail, the 3rd succeeds: reconnected;
# - ``sleepy`` goes silent for longer than the timeout, then heartbeats again: reconnected by heartbeat;
# - ``gone`` stops heartbeating for good and refuses every connect: reconnect_failed, ERROR.
#
# A blinker receiver prints every event as it happens; at the end a status table is printed and
# the manager shuts down. Ctrl+C at any moment shuts down just as cleanly (exit code 130).

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from blinker import NamedSignal

from . import signals
from .config import LifecycleConfig
from .errors import LifecycleError
from .manager import LifecycleManager
from .model import ExtensionService, ServiceId, ServiceStatus, TransportConfig

__all__ = ["DemoOptions", "add_arguments", "build_parser", "main", "options_from", "run"]

#: Every signal in `lifecycle.signals`; the demo prints each one.
SIGNALS: tuple[NamedSignal, ...] = (
    signals.service_started,
    signals.service_stopped,
    signals.status_changed,
    signals.heartbeat_received,
    signals.heartbeat_timeout,
    signals.reconnecting,
    signals.reconnected,
    signals.reconnect_failed,
    signals.service_error,
    signals.service_flapping,
)

MIN_SERVICES = 4
MAX_SERVICES = 50
#: Connects the flaky service refuses after its connection reset, before one succeeds.
FLAKY_FAILURES = 2
#: Reconnect attempts before giving up (each scheduled with exponential backoff).
MAX_ATTEMPTS = 4
#: First reconnect delay as a fraction of the heartbeat timeout (0.3 s for the default 2 s).
FIRST_DELAY_FRACTION = 0.15
#: How long sleepy stays silent, as a multiple of the heartbeat timeout.
SLEEP_FACTOR = 1.75
#: When each scenario begins, as a fraction of --duration.
GONE_AT, FLAKY_AT, SLEEPY_AT = 0.1, 0.2, 0.4
#: Column width of the signal name in event lines ("heartbeat_received").
SIGNAL_WIDTH = 18

DESCRIPTION = (
    "Watch one LifecycleManager keep simulated extension services alive: steady ones stay RUNNING, "
    "'flaky' reconnects after failed connects, 'sleepy' goes silent and comes back by heartbeat, "
    "'gone' never returns and ends in ERROR."
)
EPILOG = (
    "Reconnect delays scale with --timeout: the first is 0.15 x timeout (0.3 s by default), doubling, "
    f"capped at the timeout, {MAX_ATTEMPTS} attempts. Ctrl+C stops early, cleanly (exit code 130)."
)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The demo's settings, validated."""

    duration: float = 15.0
    services: int = 5
    timeout: float = 2.0
    interval: float = 0.5
    seed: int | None = None
    verbose: bool = False
    log_level: str | None = None


# -- command line ------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    """Parse a finite number > 0 (for argparse)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _service_count(text: str) -> int:
    """Parse the number of services (for argparse)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not MIN_SERVICES <= value <= MAX_SERVICES:
        raise argparse.ArgumentTypeError(f"must be between {MIN_SERVICES} and {MAX_SERVICES}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to `parser`."""
    defaults = DemoOptions()
    parser.add_argument("--duration", type=_positive_float, default=defaults.duration, metavar="SECONDS",
                        help="how long the demo runs (default: %(default)s)")
    parser.add_argument("--services", type=_service_count, default=defaults.services, metavar="N",
                        help=f"number of services, at least {MIN_SERVICES}; the extra ones are steady "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=_positive_float, default=defaults.timeout, metavar="SECONDS",
                        help="heartbeat timeout (default: %(default)s)")
    parser.add_argument("--interval", type=_positive_float, default=defaults.interval, metavar="SECONDS",
                        help="heartbeat interval, at most half the timeout (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed the random numbers (backoff jitter, heartbeat phases) for a repeatable run")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print every heartbeat_received event (otherwise they are only counted)")
    parser.add_argument("--log-level", type=str.upper, default=None,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="configure logging at this level to see the library's own log records on stderr "
                             "(default: logging is left alone)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of the stand-alone ``lifecycle-demo`` command."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return parser


def options_from(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> DemoOptions:
    """Check the parsed options against each other (argparse error if they clash)."""
    if namespace.interval > namespace.timeout / 2:
        parser.error(f"--interval ({namespace.interval:g}) must be at most half of --timeout "
                     f"({namespace.timeout:g}), so steady services never miss a deadline")
    return DemoOptions(duration=namespace.duration, services=namespace.services, timeout=namespace.timeout,
                       interval=namespace.interval, seed=namespace.seed, verbose=namespace.verbose,
                       log_level=namespace.log_level)


def main(argv: list[str] | None = None) -> int:
    """Parse the demo's options (``sys.argv[1:]`` by default), run it, return the exit code."""
    parser = build_parser()
    return run(options_from(parser, parser.parse_args(argv)))


# -- the simulated world ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """When each scenario happens, in seconds since the start."""

    gone_at: float
    sleepy_from: float
    sleepy_until: float
    flaky_at: float
    needed: float

    @classmethod
    def for_options(cls, options: DemoOptions) -> Plan:
        """Spread the scenarios over the run; `needed` estimates when the last one has played out."""
        duration, timeout, interval = options.duration, options.timeout, options.interval
        gone_at, sleepy_from, flaky_at = GONE_AT * duration, SLEEPY_AT * duration, FLAKY_AT * duration
        sleepy_until = sleepy_from + SLEEP_FACTOR * timeout
        # 1.1: the backoff jitter may lengthen each delay by up to 10 %.
        give_up = timeout + 1.1 * _retry_window(timeout, MAX_ATTEMPTS)  # the deadline, then every retry
        recover = 1.1 * _retry_window(timeout, FLAKY_FAILURES + 1)
        needed = max(gone_at + interval + give_up, sleepy_until + interval, flaky_at + recover + interval)
        return cls(gone_at, sleepy_from, sleepy_until, flaky_at, needed)


def _retry_window(timeout: float, attempts: int) -> float:
    """Seconds from the start of reconnecting until attempt `attempts` is due (no jitter)."""
    first = FIRST_DELAY_FRACTION * timeout
    return sum(min(timeout, first * 2.0**k) for k in range(attempts))


def make_config(options: DemoOptions) -> LifecycleConfig:
    """Short timings for the demo: delays and the delay cap follow the heartbeat timeout."""
    return LifecycleConfig(
        heartbeat_interval_secs=options.interval,
        heartbeat_timeout_secs=options.timeout,
        max_reconnect_attempts=MAX_ATTEMPTS,
        reconnect_delay_ms=FIRST_DELAY_FRACTION * options.timeout * 1000,
        max_reconnect_delay_ms=options.timeout * 1000,
        reconnect_backoff_multiplier=2.0,
        jitter=0.1,
    )


class SimulatedLink:
    """A pretend connection: `cut` breaks it, then `connect` refuses a number of times (or forever)."""

    def __init__(self, narrate: Callable[[str], None]) -> None:
        self._narrate = narrate
        self._lock = threading.Lock()
        self._up = True
        self._refusals: int | None = 0  # None: refuse forever

    @property
    def up(self) -> bool:
        """True while the service is connected (and so sends heartbeats)."""
        return self._up

    def cut(self, refusals: int | None) -> None:
        """Drop the connection; refuse the next `refusals` connects (None: all of them)."""
        with self._lock:
            self._up = False
            self._refusals = refusals

    def connect(self, service: ExtensionService) -> None:
        """The connector hook: raise while refusing, otherwise (re)connect."""
        with self._lock:
            refuse = self._refusals is None or self._refusals > 0
            if refuse:
                if self._refusals is not None:
                    self._refusals -= 1
                recovered = False
            else:
                recovered, self._up = not self._up, True
        if refuse:
            self._narrate("connect attempt refused")
            raise ConnectionRefusedError("connection refused (simulated)")
        if recovered:
            self._narrate("connect attempt accepted")


@dataclass(slots=True)
class SimService:
    """One simulated service: its role, its connection (if any) and when it keeps quiet."""

    service: ExtensionService
    role: str
    link: SimulatedLink | None = None
    silent_from: float = float("inf")
    silent_until: float = float("inf")

    @property
    def id(self) -> ServiceId:
        """The service's id."""
        return self.service.id

    @property
    def name(self) -> str:
        """The service's name."""
        return self.service.name

    def beats_at(self, elapsed: float) -> bool:
        """Whether the service sends its heartbeat at `elapsed` seconds since the start."""
        if self.link is not None and not self.link.up:
            return False
        return not self.silent_from <= elapsed < self.silent_until


# -- output ------------------------------------------------------------------------------------


def _details(name: str, kwargs: Mapping[str, Any]) -> str:
    """The interesting keyword arguments of one signal, as text."""
    if name == "status_changed":
        return f"{kwargs['old_status'].value} -> {kwargs['new_status'].value}"
    if name == "reconnecting":
        return f"attempt {kwargs['attempt']}/{kwargs['max_attempts']} in {kwargs['delay']:.3f}s"
    if name == "reconnect_failed":
        return f"gave up after {kwargs['attempts']} attempts"
    if name == "service_error":
        return f"error: {kwargs['error']}"
    return ""


class Reporter:
    """Prints one timestamped line per event (thread-safe) and counts what the table shows."""

    def __init__(self, started: float, verbose: bool) -> None:
        self.started = started
        self.verbose = verbose
        self.names: dict[str, str] = {}
        self.heartbeats: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.reconnects: Counter[str] = Counter()
        self.stopped_from: dict[str, ServiceStatus] = {}
        self._width = 8
        self._lock = threading.Lock()

    def add(self, service: SimService) -> None:
        """Know `service` by name (before it starts, so its first events are named too)."""
        self.names[service.id] = service.name
        self._width = max(self._width, len(service.name))

    def say(self, text: str) -> None:
        """Print one line now, flushed, never interleaved with another thread's line."""
        with self._lock:
            print(text, flush=True)

    def line(self, at: float, name: str, what: str, details: str = "") -> None:
        """Print one timestamped line about the service `name`."""
        self.say(f"+{at - self.started:7.3f}s  {name:<{self._width}}  {what:<{SIGNAL_WIDTH}}  {details}".rstrip())

    def narrate(self, name: str) -> Callable[[str], None]:
        """A callback printing what the simulation does to the service `name`."""
        return lambda text: self.line(time.monotonic(), name, "(simulation)", text)

    def on_event(self, sender: object, **kwargs: Any) -> None:
        """The blinker receiver connected to every signal: count, then print the event."""
        event = kwargs["event"]
        name, id = event.signal_name, kwargs["service_id"]
        with self._lock:
            self._count(name, id, kwargs)
        if name != "heartbeat_received" or self.verbose:
            self.line(event.at, self.names.get(id, id), name, _details(name, kwargs))

    def _count(self, name: str, id: str, kwargs: Mapping[str, Any]) -> None:
        """Update the counters the final table reports."""
        if name == "heartbeat_received":
            self.heartbeats[id] += 1
        elif name == "reconnecting":
            self.attempts[id] += 1
        elif name == "reconnected":
            self.reconnects[id] += 1
        elif name == "status_changed" and kwargs["new_status"] is ServiceStatus.STOPPING:
            self.stopped_from[id] = kwargs["old_status"]


def _format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


# -- the heartbeat simulator -----------------------------------------------------------------


class Simulator:
    """One background thread: sends every service's heartbeats on schedule and runs the script."""

    def __init__(self, manager: LifecycleManager, services: Sequence[SimService], started: float,
                 interval: float, rng: random.Random) -> None:
        self._manager = manager
        self._services = services
        self._started = started
        self._interval = interval
        self._next = {s.id: started + rng.uniform(0, interval) for s in services}
        self._script: list[tuple[float, Callable[[], None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycle-demo-heartbeats", daemon=True)

    def at(self, elapsed: float, action: Callable[[], None]) -> None:
        """Run `action` (in the simulator thread) `elapsed` seconds after the start."""
        self._script.append((self._started + elapsed, action))
        self._script.sort(key=lambda item: item[0])

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it (briefly)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        """Beat and act until stopped, sleeping until the next thing is due."""
        while not self._stop.is_set():
            now = time.monotonic()
            self._run_script(now)
            self._beat(now)
            wake = min([*self._next.values(), *(when for when, _ in self._script[:1])])
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def _run_script(self, now: float) -> None:
        """Run every scripted action that is due."""
        while self._script and self._script[0][0] <= now and not self._stop.is_set():
            _, action = self._script.pop(0)
            with contextlib.suppress(LifecycleError):  # e.g. ManagerClosed when racing a shutdown
                action()

    def _beat(self, now: float) -> None:
        """Send the heartbeats that are due (skipping services that keep quiet now)."""
        for sim in self._services:
            if self._next[sim.id] > now:
                continue
            while self._next[sim.id] <= now:
                self._next[sim.id] += self._interval
            if sim.beats_at(now - self._started) and not self._stop.is_set():
                with contextlib.suppress(LifecycleError):  # e.g. ManagerClosed when racing a shutdown
                    self._manager.handle_heartbeat(sim.id)


# -- the demo itself ---------------------------------------------------------------------------


def _make_services(options: DemoOptions, plan: Plan, reporter: Reporter) -> list[SimService]:
    """The cast: the steady services, then flaky, sleepy and gone."""
    def service(name: str) -> ExtensionService:
        return ExtensionService(name, "1.0.0", transport=TransportConfig(timeout_secs=options.timeout))

    steady = [SimService(service(f"steady-{n}"), "steady") for n in range(1, options.services - 2)]
    return [
        *steady,
        SimService(service("flaky"), "flaky", link=SimulatedLink(reporter.narrate("flaky"))),
        SimService(service("sleepy"), "sleepy", silent_from=plan.sleepy_from, silent_until=plan.sleepy_until),
        SimService(service("gone"), "gone", link=SimulatedLink(reporter.narrate("gone"))),
    ]


class CtrlC:
    """SIGINT handling for one run: Ctrl+C raises KeyboardInterrupt only while `armed`, otherwise it is noted."""

    def __init__(self) -> None:
        self.pressed = False
        self.armed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[CtrlC]:
        """Be the SIGINT handler meanwhile (only in the main thread, over Python's default handler)."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Demo:
    """The whole run: a manager, the simulated services, the printer and the heartbeat thread."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.plan = Plan.for_options(options)
        self.started = time.monotonic()
        self.reporter = Reporter(self.started, options.verbose)
        self.manager = LifecycleManager(config=make_config(options), autostart=True,
                                        rng=random.Random(options.seed))
        self.services = _make_services(options, self.plan, self.reporter)
        self.simulator = Simulator(self.manager, self.services, self.started, options.interval,
                                   random.Random(options.seed))
        self.finished = threading.Event()

    def start(self) -> None:
        """Print the plan, connect the printer, start every service, then the heartbeat thread."""
        self._print_plan()
        for sig in SIGNALS:
            sig.connect(self.reporter.on_event, sender=self.manager, weak=False)
        for sim in self.services:
            self.reporter.add(sim)
        for sim in self.services:
            self.manager.start_service(sim.service, connector=sim.link)
        self._write_script()
        self.simulator.start()

    def wait(self) -> None:
        """Block for --duration seconds (or until `stop` is called)."""
        self.finished.wait(max(0.0, self.started + self.options.duration - time.monotonic()))

    def stop(self) -> None:
        """End the run early (from another thread)."""
        self.finished.set()

    def finish(self, interrupted: bool) -> None:
        """Stop the heartbeats, print the table, shut the manager down, say goodbye."""
        self.simulator.stop()
        try:
            self._print_table()
            self.manager.shutdown()
        finally:
            for sig in SIGNALS:
                sig.disconnect(self.reporter.on_event)  # from every sender: blinker keeps it otherwise
        self._print_shutdown()
        self.reporter.say("bye (interrupted by Ctrl+C)" if interrupted else "bye")

    def _by_role(self, role: str) -> SimService:
        """The (first) simulated service playing `role`."""
        return next(sim for sim in self.services if sim.role == role)

    def _write_script(self) -> None:
        """What the simulation does, and when."""
        plan, flaky, sleepy, gone = self.plan, self._by_role("flaky"), self._by_role("sleepy"), self._by_role("gone")
        say = self.reporter.narrate

        def gone_exits() -> None:
            assert gone.link is not None
            gone.link.cut(None)
            say(gone.name)("process exited: no more heartbeats, every connect is refused")

        def flaky_resets() -> None:
            assert flaky.link is not None
            flaky.link.cut(FLAKY_FAILURES)
            say(flaky.name)(f"connection reset (its next {FLAKY_FAILURES} connects fail)")
            self.manager.handle_error(flaky.id, "connection reset")

        self.simulator.at(plan.gone_at, gone_exits)
        self.simulator.at(plan.sleepy_from, lambda: say(sleepy.name)(
            f"dozes off for {plan.sleepy_until - plan.sleepy_from:.2f}s (timeout {self.options.timeout:g}s)"))
        self.simulator.at(plan.sleepy_until, lambda: say(sleepy.name)("wakes up and heartbeats again"))
        self.simulator.at(plan.flaky_at, flaky_resets)

    def _print_plan(self) -> None:
        """What is about to happen."""
        o, p = self.options, self.plan
        config = make_config(o)
        say = self.reporter.say
        say(f"lifecycle demo: {o.services} services for {o.duration:g}s; heartbeat every {o.interval:g}s, "
            f"timeout {o.timeout:g}s; reconnect delay {config.reconnect_delay_ms / 1000:g}s doubling up to "
            f"{config.max_reconnect_delay_ms / 1000:g}s, {MAX_ATTEMPTS} attempts")
        steady = ", ".join(sim.name for sim in self.services if sim.role == "steady")
        say(f"  {steady}: heartbeat all the time")
        say(f"  gone:     stops for good at +{p.gone_at:.2f}s and refuses every reconnect")
        say(f"  flaky:    connection reset at +{p.flaky_at:.2f}s; {FLAKY_FAILURES} connects fail, then one works")
        say(f"  sleepy:   silent from +{p.sleepy_from:.2f}s to +{p.sleepy_until:.2f}s, then heartbeats again")
        if p.needed > o.duration:
            say(f"  note: the scenarios need about {p.needed:.1f}s; with --duration {o.duration:g} "
                "some may not play out")
        if not o.verbose:
            say("  (heartbeat_received events are counted, not printed; use --verbose to see them)")
        say("")

    def _print_table(self) -> None:
        """Every service's state, read before shutdown unregisters them."""
        now = time.monotonic()
        rows = [["service", "role", "status", "last heartbeat", "heartbeats", "reconnecting", "reconnected"]]
        for sim in self.services:
            status = self.manager.get_status(sim.id)
            snapshot = self.manager.registry.get(sim.id)
            last = snapshot.last_heartbeat if snapshot is not None else None
            rows.append([sim.name, sim.role, status.value if status is not None else "-",
                         "-" if last is None else f"{now - last:.2f}s ago",
                         str(self.reporter.heartbeats[sim.id]), str(self.reporter.attempts[sim.id]),
                         str(self.reporter.reconnects[sim.id])])
        self.reporter.say(f"\nstatus at +{now - self.started:.3f}s:")
        for text in _format_table(rows):
            self.reporter.say(f"  {text}")
        self.reporter.say("")

    def _print_shutdown(self) -> None:
        """How each service was stopped."""
        stopped = self.reporter.stopped_from
        how = ", ".join(f"{sim.name} (was {stopped[sim.id].value})" for sim in self.services if sim.id in stopped)
        self.reporter.say(f"shutdown complete: stopped {len(stopped)} of {len(self.services)} services: {how}")


def _configure_logging(level: str | None) -> None:
    """Configure logging only when asked to (--log-level)."""
    if level is not None:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)-7s %(message)s")


def run(options: DemoOptions) -> int:
    """Run the demo; 0 when it ran its course, 130 when Ctrl+C ended it."""
    # Ctrl+C interrupts only the wait: pressed while the services start, it ends the run right
    # after; pressed while shutting down, it is ignored, so the shutdown always completes.
    _configure_logging(options.log_level)
    with CtrlC().installed() as ctrl_c:
        demo = Demo(options)
        try:
            demo.start()
            ctrl_c.armed = True
            if not ctrl_c.pressed:
                demo.wait()
        except KeyboardInterrupt:
            ctrl_c.pressed = True
        finally:
            ctrl_c.armed = False
            if ctrl_c.pressed:
                demo.reporter.line(time.monotonic(), "", "Ctrl+C", "interrupted: shutting down")
            demo.finish(ctrl_c.pressed)
    return 130 if ctrl_c.pressed else 0


if __name__ == "__main__":
    sys.exit(main())
