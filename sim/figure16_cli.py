"""``python -m sim figure16``: the command line of the Raft paper's Figure 16 experiment.

The experiment itself (one trial, many trials, the summaries) is sim/figure16.py;
the plot is sim/figure16_plot.py. This module parses the options, runs the
ranges with a progress bar and writes the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sim.distributions import DistributionError, Latency
from sim.figure16 import (
    DEFAULT_LATENCY,
    DEFAULT_MAX_DOWNTIME,
    FIGURE_RANGES,
    PAPER_BROADCAST_MS,
    Conditions,
    Figure16Error,
    TimeoutRange,
    comparison,
    format_table,
    run_ranges,
    summarize,
    summary_json,
)


def _ranges_arg(text: str) -> tuple[TimeoutRange, ...]:
    try:
        ranges = tuple(TimeoutRange.parse(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not ranges:
        raise argparse.ArgumentTypeError("no timeout range given")
    return tuple(dict.fromkeys(ranges))


def _latency_arg(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except DistributionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _disk_arg(text: str) -> Latency | None:
    return None if text == "none" else _latency_arg(text)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return v


def add_figure16(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "figure16",
        help="reproduce Figure 16 of the Raft paper (time to elect a new leader after a crash)",
        description="Reproduce §9.3 / Figure 16 of the Raft paper (Ongaro & Ousterhout, USENIX ATC 2014) with the "
        "real Raft core: 5 servers, heartbeat at half the minimum election timeout, logs of different lengths "
        "(two of the four survivors cannot win), the leader crashed at a uniformly random time in its heartbeat "
        "interval; downtime runs from the crash until every survivor knows the new leader. Prints each range's "
        "median, mean, 99th percentile and maximum beside the numbers the paper states, writes "
        "DIR/figure16.json and the figure's two CDF panels to DIR/figure16.png.",
    )
    p.add_argument("--trials", type=_positive_int, default=1000, metavar="N",
                   help="trials per timeout range (default 1000, as in the paper)")
    p.add_argument("--fixed-trials", type=_positive_int, default=None, metavar="N",
                   help="trials for a range without randomness (150-150), whose elections take long "
                   "(default a tenth of --trials, at least 1: the paper ran 100)")
    p.add_argument("--out", metavar="DIR", default="sim-out/figure16",
                   help="output directory for figure16.json and figure16.png (default sim-out/figure16)")
    p.add_argument("--seed", type=int, default=1, help="the one seed every trial's randomness derives from (default 1)")
    p.add_argument("--jobs", type=_positive_int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes; the results do not depend on it (default one per CPU)")
    p.add_argument("--ranges", type=_ranges_arg, default=FIGURE_RANGES, metavar="LIST",
                   help="comma-separated election timeout ranges MIN-MAX in ms (default the figure's: "
                   + ",".join(r.label for r in FIGURE_RANGES) + ")")
    p.add_argument("--latency", type=_latency_arg, default=Latency.parse(DEFAULT_LATENCY), metavar="SPEC",
                   help="one-way network latency of every message: constant:D | uniform:LO:HI | "
                   f"exponential:MIN:MEAN | lognormal:MEDIAN:SIGMA, seconds (default {DEFAULT_LATENCY}: a "
                   "broadcast time of about 15 ms, as in the paper)")
    p.add_argument("--disk", type=_disk_arg, default=None, metavar="SPEC",
                   help="disk write before a node sends what must be durable (a new term or vote, entries), "
                   "same syntax, or 'none' (default none); e.g. --latency uniform:0.0002:0.0006 --disk "
                   "uniform:0.012:0.016 is the dissertation's 'network round trip plus disk write' of 15 ms")
    p.add_argument("--equal-logs", action="store_true",
                   help="give every follower the whole log, so that every survivor can win (the paper's logs "
                   "differ: two of the four survivors cannot); shows what the log comparison costs")
    p.add_argument("--max-downtime", type=_positive_float, default=DEFAULT_MAX_DOWNTIME, metavar="S",
                   help="give up on a trial after S simulated seconds without a known leader; it counts as S "
                   f"(default {DEFAULT_MAX_DOWNTIME:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_figure16)


def cmd_figure16(args: argparse.Namespace) -> int:
    ranges: tuple[TimeoutRange, ...] = args.ranges
    fixed = args.fixed_trials or max(1, args.trials // 10)

    def trials(r: TimeoutRange) -> int:
        return fixed if r.no_randomness else int(args.trials)

    conditions = Conditions(args.latency, args.disk, args.equal_logs, args.max_downtime)
    bcast = conditions.broadcast_time(args.seed) * 1000
    print(f"figure16 seed={args.seed} trials={args.trials} fixed-trials={fixed} {conditions.spec()} "
          f"(broadcast ~{bcast:.1f} ms; paper ~{PAPER_BROADCAST_MS:g} ms) heartbeat=min/2 jobs={args.jobs} "
          f"ranges={','.join(r.label for r in ranges)}")
    started = time.monotonic()
    try:
        results = run_ranges(ranges, trials, conditions, args.seed, args.jobs, progress=not args.no_progress)
    except Figure16Error as e:
        print(f"figure16: {e}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    summaries = {r.label: summarize(results[r.label]) for r in ranges}
    print(format_table(summaries))
    print("the paper's statements (Ongaro & Ousterhout 2014, §9.3) beside ours, ms:")
    print("\n".join(comparison(summaries)))
    retried = sum(t.setup_attempts - 1 for rs in results.values() for t in rs)
    if retried:
        print(f"note: {retried} set-up(s) repeated because an election started before the crash")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figure16.json").write_text(json.dumps(summary_json(summaries), indent=2) + "\n")
    from sim.figure16_plot import plot_figure16

    plot_figure16(summaries, out / "figure16.png", subtitle=f"seed {args.seed}, {conditions.spec()}")
    print(f"wrote {out / 'figure16.json'} and {out / 'figure16.png'}; {elapsed:.1f} s")
    return 0
