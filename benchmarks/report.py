"""Turn raw case results into medians with spread, ratios, target checks and one Markdown table.

``python -m benchmarks.report FILE.json`` re-prints the table of a saved run;
``python -m benchmarks.report --compare A.json B.json`` shows how much two runs differ (noise).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ROWS", "aggregate", "compare", "render"]

Medians = dict[int, float]
#: Given the medians per N, the sizes that miss the target ([] = met), or None when nothing was judged.
Check = Callable[[Medians], list[int] | None]


def _judge(values: Medians, limit: float, sizes: Callable[[int], bool], strict: bool) -> list[int] | None:
    judged = {n: v for n, v in values.items() if sizes(n)}
    if not judged:
        return None
    return [n for n, v in judged.items() if (v >= limit if strict else v > limit)]


def _all(limit: float, *, strict: bool = False) -> Check:
    return lambda values: _judge(values, limit, lambda n: True, strict)


def _at(size: int, limit: float) -> Check:
    return lambda values: _judge(values, limit, lambda n: n == size, False)


def _upto(size: int, limit: float) -> Check:
    return lambda values: _judge(values, limit, lambda n: n <= size, False)


def _flat(values: Medians) -> list[int] | None:
    if not values:
        return None
    first = values[min(values)]
    return [n for n, v in values.items() if v != first]


_AHEAD = _all(1, strict=True)


@dataclass(frozen=True)
class Row:
    """One table row: a metric (`job`.`key`), or a ratio of two metrics, or a section heading."""

    label: str
    job: str = ""
    key: str = ""
    den_job: str = ""  # ratio rows: median(job.key) / median(den_job.den_key) at the same N
    den_key: str = ""
    growth: bool = False  # value at N / value at the smallest N
    scale: float = 1.0
    kind: str = "num"  # num | int | bool | hist | ratio | section
    target: str = ""
    check: Check | None = None
    single: bool = False  # not per N: shown once, in the first column


S = Row  # short alias for section rows below

ROWS: list[Row] = [
    S("**lifecycle**", kind="section"),
    Row("start_service, µs per service", "start", "start_us", target="≤ 25", check=_all(25)),
    Row("start N services, total s", "start", "start_total_s", target="100k < 2.5 s", check=_at(100_000, 2.5)),
    Row("threads alive after start (incl. main)", "start", "threads", kind="int",
        target="1 watchdog + pool, same for every N", check=_flat),
    Row("RSS growth, KiB per service", "start", "rss_kib_per_service", target="≤ 3", check=_all(3)),
    Row("handle_heartbeat p50 µs, no receiver", "heartbeat", "none_p50_us"),
    Row("  x floor (Lock)", "heartbeat", "none_p50_us", "floor", "lock_p50_us", kind="ratio", target="≤ 4x",
        check=_all(4)),
    Row("  growth vs smallest N", "heartbeat", "none_p50_us", growth=True, kind="ratio", target="≤ 1.3x",
        check=_all(1.3)),
    Row("handle_heartbeat p99 µs, no receiver", "heartbeat", "none_p99_us"),
    Row("handle_heartbeat p50 µs, 1 receiver", "heartbeat", "recv_p50_us"),
    Row("  x floor (Lock)", "heartbeat", "recv_p50_us", "floor", "lock_p50_us", kind="ratio", target="≤ 8x",
        check=_all(8)),
    Row("  growth vs smallest N", "heartbeat", "recv_p50_us", growth=True, kind="ratio", target="≤ 1.3x",
        check=_all(1.3)),
    Row("handle_heartbeat p99 µs, 1 receiver", "heartbeat", "recv_p99_us"),
    Row("events built per 1,000 beats, no receiver", "heartbeat", "events_built_no_receiver", kind="int",
        target="0", check=_all(0)),
    Row("heartbeat throughput, 4 threads, k calls/s", "throughput", "calls_per_s", scale=1e-3),
    Row("  x floor throughput (4 threads)", "throughput", "calls_per_s", "floor", "calls_per_s_4threads",
        kind="ratio"),
    Row("heartbeat throughput, 1 thread (same process), k calls/s", "throughput", "calls_per_s_1_thread",
        scale=1e-3),
    Row("  4 threads ÷ 1 thread (median of 3 alternations)", "throughput", "ratio_4_to_1", target="≥ 1"),
    Row("idle CPU, % of one core (N healthy, nothing due)", "idle", "cpu_pct", target="≤ 0.1 (at 100k)",
        check=_all(0.1)),
    Row("watchdog wakeups/s (N healthy, nothing due)", "idle", "wakeups_per_s", target="0", check=_all(0)),
    Row("watchdog wakeups/s, no service (after start+stop)", "wakeups", "wakeups_per_s", single=True,
        target="0", check=_all(0)),
    Row("idle CPU %, no service (after start+stop)", "wakeups", "cpu_pct", single=True),
    Row("detection lag p50, ms (timeout 1 s, deadlines clustered)", "lag", "lag_p50_ms"),
    Row("detection lag p99, ms", "lag", "lag_p99_ms", target="≤ 10 at 10k", check=_at(10_000, 10)),
    Row("detection lag max, ms", "lag", "lag_max_ms"),
    Row("false timeouts", "lag", "false_timeouts", kind="int", target="0 (up to 10k)", check=_upto(10_000, 0)),
    Row("missed timeouts (of 200)", "lag", "missed", kind="int", target="0 (up to 10k)",
        check=_upto(10_000, 0)),
    Row("heartbeat threads kept up: max gap, s", "lag", "hb_max_gap_s", target="≤ 0.6 (valid run)",
        check=_all(0.6)),
    Row("CPU during lag window, % of one core", "lag", "window_cpu_pct"),
    Row("lag p50, ms, beats paced over the period (deadlines spread)", "lag_spread", "lag_p50_ms"),
    Row("lag p99, ms, deadlines spread", "lag_spread", "lag_p99_ms", target="≤ 10 at 10k", check=_at(10_000, 10)),
    Row("lag max, ms, deadlines spread", "lag_spread", "lag_max_ms"),
    Row("false timeouts, deadlines spread", "lag_spread", "false_timeouts", kind="int",
        target="0 (up to 10k)", check=_upto(10_000, 0)),
    Row("missed timeouts, deadlines spread", "lag_spread", "missed", kind="int", target="0 (up to 10k)",
        check=_upto(10_000, 0)),
    Row("heartbeat threads kept up (spread): max gap, s", "lag_spread", "hb_max_gap_s",
        target="≤ 0.6 (valid run)", check=_all(0.6)),
    Row("storm (1,000 svc, connect fails 2x): all RUNNING after, s", "storm", "all_running_s", single=True),
    Row("storm: attempt-1 start spread, ms (jitter 0.5)", "storm", "attempt1_spread_ms", single=True),
    Row("storm: attempt-1 start spread, ms (jitter 0)", "storm_j0", "attempt1_spread_ms", single=True),
    Row("storm: attempt starts, 10 bins from 1st timeout (jitter 0.5)", "storm", "hist", kind="hist",
        single=True),
    Row("storm: attempt starts, 10 bins (jitter 0)", "storm_j0", "hist", kind="hist", single=True),
    S("**paced heartbeats** (timeout 1 s, interval timeout/3, one thread beats each service at its due time; "
      "200 go silent within ~1 ms)", kind="section"),
    Row("lag p50, ms, lifecycle", "paced_lag", "lag_p50_ms"),
    Row("lag p99, ms, lifecycle", "paced_lag", "lag_p99_ms", target="≤ 2", check=_all(2)),
    Row("lag max, ms, lifecycle", "paced_lag", "lag_max_ms"),
    Row("lag p50, ms, one-thread sched baseline", "paced_lag_base", "lag_p50_ms"),
    Row("lag p99, ms, one-thread sched baseline", "paced_lag_base", "lag_p99_ms"),
    Row("lag max, ms, one-thread sched baseline", "paced_lag_base", "lag_max_ms"),
    Row("  p50 lifecycle ÷ baseline", "paced_lag", "lag_p50_ms", "paced_lag_base", "lag_p50_ms", kind="ratio"),
    Row("  p99 lifecycle ÷ baseline", "paced_lag", "lag_p99_ms", "paced_lag_base", "lag_p99_ms", kind="ratio"),
    Row("  max lifecycle ÷ baseline", "paced_lag", "lag_max_ms", "paced_lag_base", "lag_max_ms", kind="ratio"),
    Row("false timeouts, lifecycle", "paced_lag", "false_timeouts", kind="int", target="0", check=_all(0)),
    Row("missed timeouts (of 200), lifecycle", "paced_lag", "missed", kind="int", target="0", check=_all(0)),
    Row("false timeouts, baseline", "paced_lag_base", "false_timeouts", kind="int"),
    Row("  missed, baseline", "paced_lag_base", "missed", kind="int"),
    Row("the 200 last beats spread over, ms, lifecycle", "paced_lag", "last_beats_within_ms"),
    Row("beats/s (3 x N when the thread keeps up), lifecycle", "paced_lag", "beats_per_s"),
    Row("beat lateness p99, ms, lifecycle", "paced_lag", "beat_late_p99_ms"),
    Row("beat lateness p99, ms, baseline", "paced_lag_base", "beat_late_p99_ms"),
    S("**baseline: CPython floor** (monotonic + `with lock:` + dict write, as a function)", kind="section"),
    Row("Lock, p50 µs per call (the floor)", "floor", "lock_p50_us"),
    Row("RLock, p50 µs per call", "floor", "rlock_p50_us"),
    Row("Lock, 4 threads, k calls/s", "floor", "calls_per_s_4threads", scale=1e-3),
    S("**baseline: one threading.Timer per service** (re-created on each heartbeat)", kind="section"),
    Row("start, µs per service", "timer", "start_us"),
    Row("threads alive", "timer", "threads", kind="int"),
    Row("RSS growth, KiB per service", "timer", "rss_kib_per_service"),
    Row("idle CPU, % of one core", "timer", "idle_cpu_pct"),
    Row("heartbeat p50 µs", "timer", "hb_p50_us"),
    Row("heartbeat p99 µs", "timer", "hb_p99_us"),
    S("**baseline: poller thread per service** (wakes every timeout/3; its heartbeat is the floor)",
      kind="section"),
    Row("start, µs per service", "poller", "start_us"),
    Row("threads alive", "poller", "threads", kind="int"),
    Row("RSS growth, KiB per service", "poller", "rss_kib_per_service"),
    Row("idle CPU, % of one core (timeout 90 s)", "poller", "idle_cpu_pct"),
    Row("wakeups/s idle", "poller", "wakeups_per_s"),
    Row("detection lag p50, ms (timeout 1 s)", "poller_lag", "lag_p50_ms"),
    Row("detection lag p99, ms", "poller_lag", "lag_p99_ms"),
    Row("detection lag max, ms", "poller_lag", "lag_max_ms"),
    Row("false timeouts", "poller_lag", "false_timeouts", kind="int"),
    Row("missed timeouts (of 200)", "poller_lag", "missed", kind="int"),
    Row("heartbeat threads kept up: max gap, s", "poller_lag", "hb_max_gap_s"),
    S("**lifecycle ÷ baselines** (ratio of medians, same N; < 1 means lifecycle is ahead)", kind="section"),
    Row("start ÷ Timer", "start", "start_us", "timer", "start_us", kind="ratio", target="< 1", check=_AHEAD),
    Row("start ÷ poller", "start", "start_us", "poller", "start_us", kind="ratio", target="< 1", check=_AHEAD),
    Row("threads ÷ Timer", "start", "threads", "timer", "threads", kind="ratio", target="< 1", check=_AHEAD),
    Row("RSS per service ÷ Timer", "start", "rss_kib_per_service", "timer", "rss_kib_per_service", kind="ratio",
        target="< 1", check=_AHEAD),
    Row("RSS per service ÷ poller", "start", "rss_kib_per_service", "poller", "rss_kib_per_service",
        kind="ratio", target="< 1", check=_AHEAD),
    Row("heartbeat p50 ÷ Timer", "heartbeat", "none_p50_us", "timer", "hb_p50_us", kind="ratio", target="< 1",
        check=_AHEAD),
    Row("heartbeat p50 ÷ poller (= ÷ floor)", "heartbeat", "none_p50_us", "floor", "lock_p50_us", kind="ratio",
        target="< 1", check=_AHEAD),
    Row("idle CPU ÷ Timer", "idle", "cpu_pct", "timer", "idle_cpu_pct", kind="ratio", target="< 1",
        check=_AHEAD),
    Row("idle CPU ÷ poller", "idle", "cpu_pct", "poller", "idle_cpu_pct", kind="ratio", target="< 1",
        check=_AHEAD),
    Row("lag p99 ÷ poller", "lag", "lag_p99_ms", "poller_lag", "lag_p99_ms", kind="ratio", target="< 1",
        check=_AHEAD),
]


def aggregate(runs: Iterable[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Group raw runs as ``{job: {n: {"values": {key: [v, ...]}, "notes": [why a run gave no numbers]}}}``."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        slot = out.setdefault(run["job"], {}).setdefault(run["n"], {"values": {}, "notes": []})
        if run["status"] != "ok":
            slot["notes"].append(run["note"])
            continue
        for key, value in run["result"].items():
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, (int, float, list)):
                slot["values"].setdefault(key, []).append(value)
    return out


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax == 0:
        return "0"
    return f"{x:.2g}" if ax < 0.01 else f"{x:.3f}"


def _median(agg: dict[str, dict[int, dict[str, Any]]], job: str, key: str, n: int) -> float | None:
    values = agg.get(job, {}).get(n, {}).get("values", {}).get(key)
    if not values:
        return None
    return float(statistics.median(values))


def _note(agg: dict[str, dict[int, dict[str, Any]]], job: str, n: int) -> str:
    notes = agg.get(job, {}).get(n, {}).get("notes", [])
    return notes[0] if notes else "—"


def _cell(row: Row, agg: dict[str, dict[int, dict[str, Any]]], n: int, first: int) -> tuple[str, float | None]:
    if row.kind == "ratio":
        num = _median(agg, row.job, row.key, n)
        if row.growth:
            den = _median(agg, row.job, row.key, first)
            if n == first:
                return "—", None
        else:
            den = _median(agg, row.den_job, row.den_key, n)
        if num is None or den is None:
            missing = row.job if num is None else row.den_job
            note = _note(agg, missing, n)
            return (note if note != "—" else "—"), None
        if den == 0:
            return "n/a (÷0)", None
        ratio = num / den
        return f"x{_fmt(ratio)}", ratio
    values = agg.get(row.job, {}).get(n, {}).get("values", {}).get(row.key)
    if not values:
        return _note(agg, row.job, n), None
    if row.kind == "hist":
        hist = values[0]
        width = agg[row.job][n]["values"].get("hist_ms_width", [0.0])[0]
        return " ".join(str(c) for c in hist) + f" ({_fmt(width)} ms bins)", None
    scaled = [v * row.scale for v in values]
    med = float(statistics.median(scaled))
    if row.kind == "bool":
        return ("yes" if all(scaled) else "no" if not any(scaled) else f"{sum(scaled):.0f}/{len(scaled)} yes"), med
    text = f"{med:.0f}" if row.kind == "int" else _fmt(med)
    if len(scaled) > 1 and min(scaled) != max(scaled):
        lo, hi = min(scaled), max(scaled)
        text += f" ({lo:.0f}..{hi:.0f})" if row.kind == "int" else f" ({_fmt(lo)}..{_fmt(hi)})"
    return text, med


def _rows(jobs: set[str] | None) -> list[Row]:
    """ROWS, or only the rows of these jobs (and the section headings above them)."""
    if jobs is None:
        return ROWS
    out: list[Row] = []
    heading: Row | None = None
    for row in ROWS:
        if row.kind == "section":
            heading = row
        elif row.job in jobs and (not row.den_job or row.den_job in jobs):
            if heading is not None:
                out.append(heading)
                heading = None
            out.append(row)
    return out


def render(agg: dict[str, dict[int, dict[str, Any]]], sizes: list[int],
           jobs: set[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table (median (min..max) over repeats, footnotes below) and the per-target verdicts.

    With `jobs`, only the rows of those jobs are shown (a run of some of the jobs).
    """
    first = sizes[0]
    head = "| measurement | " + " | ".join(f"N = {n:,}" for n in sizes) + " | target | met |"
    lines = [head, "|---|" + "---|" * len(sizes) + "---|:-:|"]
    verdicts: list[dict[str, Any]] = []
    footnotes: dict[str, int] = {}
    section = ""
    for row in _rows(jobs):
        if row.kind == "section":
            section = row.label
            lines.append(f"| {row.label} |" + " |" * (len(sizes) + 2))
            continue
        cells: list[str] = []
        medians: Medians = {}
        for n in sizes:
            if row.single and n != first:
                cells.append("″")
                continue
            key_n = _single_n(agg, row.job) if row.single else n
            text, value = _cell(row, agg, key_n, first) if key_n is not None else ("—", None)
            if value is None and text.startswith(("not run:", "failed:")):
                if text not in footnotes:
                    footnotes[text] = len(footnotes) + 1
                text = f"{text.split(':')[0]} [{footnotes[text]}]"
            cells.append(text)
            if value is not None:
                medians[n] = value
        failing = row.check(medians) if row.check else None
        met = None if failing is None else not failing
        mark = "" if row.check is None else ("—" if failing is None else
                                             "❌ " + ", ".join(_short(n) for n in failing) if failing else "✅")
        if row.check is not None:
            verdicts.append({"section": section, "row": row.label.strip(), "target": row.target,
                             "met": met, "missed_at": failing, "values": medians})
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {row.target} | {mark} |")
    if footnotes:
        lines.append("")
        lines += [f"[{k}] {text}" for text, k in footnotes.items()]
    return "\n".join(lines), verdicts


def _short(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _single_n(agg: dict[str, dict[int, dict[str, Any]]], job: str) -> int | None:
    sizes = sorted(agg.get(job, {}))
    return sizes[0] if sizes else None


_BOOKKEEPING = {"n", "ok", "batch", "batches", "silent", "hb_rounds", "threads_used", "window_s"}


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """A Markdown table of every shared numeric median in two saved runs and their relative difference."""
    agg_a, agg_b = aggregate(a["runs"]), aggregate(b["runs"])
    lines = ["| job | N | key | run A | run B | B/A |", "|---|---|---|---|---|---|"]
    for job in sorted(set(agg_a) & set(agg_b)):
        for n in sorted(set(agg_a[job]) & set(agg_b[job])):
            va, vb = agg_a[job][n]["values"], agg_b[job][n]["values"]
            for key in sorted(set(va) & set(vb) - _BOOKKEEPING):
                if isinstance(va[key][0], list):
                    continue
                ma, mb = statistics.median(va[key]), statistics.median(vb[key])
                ratio = "n/a" if ma == 0 else f"{mb / ma:.2f}"
                lines.append(f"| {job} | {n:,} | {key} | {_fmt(ma)} | {_fmt(mb)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table of a saved run, or compare two saved runs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--compare", action="store_true", help="compare two saved runs")
    args = parser.parse_args(argv)
    docs = []
    for path in args.files:
        with open(path) as f:
            docs.append(json.load(f))
    if args.compare:
        if len(docs) != 2:
            parser.error("--compare takes two files")
        print(compare(docs[0], docs[1]))
        return 0
    for doc in docs:
        table, _ = render(aggregate(doc["runs"]), doc["meta"]["sizes"])
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
