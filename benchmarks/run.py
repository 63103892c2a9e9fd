"""The benchmark runner: every case in a fresh, time-limited subprocess; one Markdown table; JSON results.

Usage::

    python -m benchmarks                    # N = 1,000, 10,000, 100,000; 3 repeats
    python -m benchmarks --quick            # N = 1,000, 1 repeat (smoke run, ~1 min)
    python -m benchmarks --sizes 1000,10000 --repeat 5
    python -m benchmarks paced-lag          # only the paced-heartbeat lag, library and baseline, N = 1,000 and 10,000

Results go to ``benchmarks/results/<timestamp>.json`` and ``benchmarks/results/latest.json``.
Repeats run round-robin (repeat 1 of everything, then repeat 2, ...), so slow drift of the machine
spreads over all cases. A case that fails, times out or declares itself infeasible is recorded
with the reason and not repeated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .report import aggregate, render

__all__ = ["Job", "main", "plan", "run_job"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
STORM_N = 1_000
#: The paced-lag scenario's sizes; above 10,000 one beating thread cannot keep 3 beats/s per service.
PACED_SIZES = (1_000, 10_000)
PACED_JOBS = ("paced_lag", "paced_lag_base")


@dataclass(frozen=True)
class Job:
    """One measurement: a case of a module at a size, with a time limit and a repeat cap."""

    job: str
    module: str
    case: str
    n: int
    limit: float
    args: tuple[str, ...] = ()
    max_repeat: int = 99

    def argv(self) -> list[str]:
        """The subprocess command line."""
        return [sys.executable, "-m", self.module, self.case, str(self.n), *self.args]


def plan(sizes: list[int], seconds: float) -> list[Job]:
    """Every job of one repeat: per-size cases and baselines, then the size-independent ones."""
    cases, bases = "benchmarks.cases", "benchmarks.baselines"
    window = ("--seconds", f"{seconds:g}")
    jobs: list[Job] = []
    for n in sizes:
        k = n / 1000  # thousands of services, for time limits
        jobs += [
            Job("floor", bases, "floor", n, 60 + 0.2 * k),
            Job("start", cases, "start", n, 60 + 0.3 * k),
            Job("heartbeat", cases, "heartbeat", n, 90 + 0.3 * k),
            Job("throughput", cases, "throughput", n, 60 + 0.3 * k),
            Job("idle", cases, "idle", n, 60 + 0.3 * k, window),
            Job("lag", cases, "lag", n, 90 + 0.9 * k),
            Job("lag_spread", cases, "lag_spread", n, 90 + 0.9 * k),
            Job("timer", bases, "timer", n, 60 + 3 * k, window),
            Job("poller", bases, "poller", n, 60 + 3 * k, window),
            # 10,000 poller threads with a 1 s timeout can saturate the whole (shared) machine for
            # as long as they run: bounded start, and run once at sizes above 1,000.
            Job("poller_lag", bases, "poller_lag", n, 60, ("--budget", "20"), max_repeat=99 if n <= 1000 else 1),
        ]
        if n <= max(PACED_SIZES):
            jobs += paced_plan([n])
    jobs += [
        Job("wakeups", cases, "wakeups", 0, 60, window),
        Job("storm", cases, "storm", STORM_N, 60, ("--jitter", "0.5")),
        Job("storm_j0", cases, "storm", STORM_N, 60, ("--jitter", "0")),
    ]
    return jobs


def paced_plan(sizes: list[int]) -> list[Job]:
    """The paced-heartbeat lag: the library, then the one-thread `sched` baseline, at each size.

    Repeats run round-robin, so the two designs alternate run by run on the same machine.
    """
    paced = "benchmarks.paced"
    return [Job(name, paced, name, n, 60 + 2 * n / 1000) for n in sizes for name in PACED_JOBS]


def run_job(job: Job) -> dict[str, Any]:
    """Run one job in a fresh interpreter; return its record (status ok / infeasible / timeout / failed)."""
    t0 = time.monotonic()
    record: dict[str, Any] = {"job": job.job, "case": job.case, "n": job.n, "limit_s": job.limit}
    try:
        proc = subprocess.run(job.argv(), cwd=ROOT, capture_output=True, text=True, timeout=job.limit,
                              check=False)
    except subprocess.TimeoutExpired:
        record.update(status="timeout", note=f"did not finish in {job.limit:.0f} s")
    else:
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        result = json.loads(line) if line else None
        if result is not None and result.get("ok"):
            record.update(status="ok", result=result)
        elif result is not None and "infeasible" in result:
            record.update(status="infeasible", note=f"not run: {result['infeasible']}")
        else:
            err = (result or {}).get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
            record.update(status="failed", note=f"failed: {err}", stderr=proc.stderr[-4000:])
    record["seconds"] = round(time.monotonic() - t0, 2)
    return record


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "lifecycle").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _parse_sizes(text: str) -> list[int]:
    return sorted({int(s.replace("_", "").replace(",", "")) for s in text.split(",") if s.strip()})


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="lifecycle performance benchmarks")
    parser.add_argument("command", nargs="?", choices=["paced-lag"],
                        help="paced-lag: only the paced-heartbeat detection lag against its baseline "
                             "(N = 1,000 and 10,000, 3 interleaved runs each; about 1 minute)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1,000 only, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--sizes", type=str, default=None, help="comma-separated N values (default 1000,10000,100000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="idle measurement window, s (default 3)")
    parser.add_argument("--only", type=str, default=None, help="comma-separated job names to run (default all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.command == "paced-lag":
        sizes = _parse_sizes(args.sizes) if args.sizes else ([1_000] if args.quick else list(PACED_SIZES))
    else:
        sizes = _parse_sizes(args.sizes) if args.sizes else ([1_000] if args.quick else list(DEFAULT_SIZES))
    repeat = 1 if args.quick and args.repeat == 3 else max(1, args.repeat)
    jobs = paced_plan(sizes) if args.command == "paced-lag" else plan(sizes, args.seconds)
    if args.only:
        wanted = set(args.only.split(","))
        jobs = [j for j in jobs if j.job in wanted]
    shown = {j.job for j in jobs} if args.command or args.only else None
    started = datetime.now(UTC)
    sha_before = _fingerprint()
    load_start = os.getloadavg()
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []
    given_up: set[tuple[str, int]] = set()
    total = len(jobs) * repeat
    done = 0
    for rep in range(1, repeat + 1):
        for job in jobs:
            done += 1
            if (job.job, job.n) in given_up or rep > job.max_repeat:
                continue
            record = run_job(job)
            record["repeat"] = rep
            runs.append(record)
            if record["status"] != "ok":
                given_up.add((job.job, job.n))
            state = record["status"] if record["status"] == "ok" else record["note"]
            print(f"[{done}/{total}] {job.job} N={job.n:,} repeat {rep}: {state} ({record['seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
    elapsed = time.monotonic() - t0
    table, verdicts = render(aggregate(runs), sizes, shown)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sizes": sizes,
        "repeat": repeat,
        "idle_window_s": args.seconds,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "lifecycle_sha": sha_before,
        "lifecycle_changed_during_run": _fingerprint() != sha_before,
        "loadavg_start": load_start,
        "jobs": [asdict(j) for j in jobs],
        "spread": "median (min..max) over repeats",
    }
    doc = {"meta": meta, "runs": runs, "verdicts": verdicts, "table": table}
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(doc, indent=1, default=str)
    (args.out / f"{stamp}.json").write_text(text)
    (args.out / "latest.json").write_text(text)
    print(table)
    print()
    print(f"median (min..max) over {repeat} repeat(s); sizes {', '.join(f'{n:,}' for n in sizes)}; "
          f"{elapsed:.0f} s; load average {load_start[0]:.2f} at start, {meta['loadavg_end'][0]:.2f} at end; "
          f"lifecycle {sha_before}{' (CHANGED during the run)' if meta['lifecycle_changed_during_run'] else ''}; "
          f"results in {args.out / (stamp + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
