"""The simulator's command line: ``run``, ``sweep``, ``replay`` and ``bench``.

``add_parsers(subparsers)`` registers the four subcommands on the ``python -m
sim`` parser; ``main`` runs them standalone (``python -m sim.cli run ...``).
Exit status: 0 when every check of every run passed, 1 when any failed,
3 for bad usage (``sim/__main__.py``'s convention).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from kv.bugs import TeachingBug
from sim.options import RunOptions
from sim.schedule import Fault, ScheduleError
from sim.schedule import read as read_schedule

USAGE_ERROR = 3

HELP = {
    "seed": "the one seed every random choice derives from (network, disk, clocks, workload, faults)",
    "nodes": "cluster size (members)",
    "duration": "length of the fault phase in simulated seconds; clients run during it",
    "quiet": "length of the quiet (liveness) phase after every fault is healed, simulated seconds",
    "nemesis": "comma-separated faults to inject (see --nemesis list), or 'none'",
    "nemesis_interval": "typical seconds a fault holds and the gap before the next; smaller is faster and "
    "more frequent faults",
    "pre_vote": "Raft PreVote (dissertation 9.6): true or false",
    "check_quorum": "Raft CheckQuorum with leader lease (dissertation 6.2): true or false",
    "max_msg_bytes": "Raft's max_size_per_msg: bytes of entries per append message (one entry at least); "
    "a small value splits batches, which widens the window of the commit-old-term bug",
    "workload": "client workload: register (get/put/delete/cas on a few keys with unique values), txn "
    "(multi-key transactions), lock (etcd's mutex with fencing tokens), election (campaign/proclaim/"
    "resign/observe), watch (watchers resuming across faults), lease (expiry vs keep-alive), discovery "
    "(service registry with leases + watch), config (read, then watch from the next revision); "
    "'all' in a sweep runs each",
    "clients": "number of concurrent simulated clients",
    "rate": "client operations per simulated second, all clients together",
    "keys": "register and txn workloads: number of keys the clients share (txn uses at least 10)",
    "lock_fencing": "lock workload: guard each write with the lock key's create revision (the fencing token); "
    "false shows Jepsen's lost update when clients pause past their lease",
    "client_timeout": "seconds a client waits for an answer before recording the operation as info",
    "latency": "member-to-member one-way latency: constant:D | uniform:LO:HI | exponential:MIN:MEAN | "
    "lognormal:MEDIAN:SIGMA (seconds)",
    "client_latency": "client-to-member one-way latency, same syntax as --latency",
    "loss": "baseline probability that a message is lost (the drop fault raises it for a while)",
    "duplicate": "baseline probability that a message is delivered twice",
    "reorder": "baseline probability that a message is held back past later ones",
    "disk_write": "latency of a disk write that is fsynced (unsynced writes land in the page cache at once), "
    "same syntax as --latency",
    "disk_fsync": "latency of an fsync, same syntax as --latency",
    "clock_drift": "each member's clock drift is drawn from [-X, X] (0.0001 = 100 ppm)",
    "clock_offset": "each member's initial clock offset is drawn from [-X, X] seconds",
    "election_timeout_min": "Raft election timeout lower bound, seconds (drawn uniformly up to the max)",
    "election_timeout_max": "Raft election timeout upper bound, seconds",
    "heartbeat_interval": "Raft heartbeat interval, seconds",
    "snapshot_count": "a member snapshots and compacts its log every this many applied entries",
    "check_interval": "simulated seconds between full invariant checks of every member's log and state",
    "check_timeout": "wall seconds the linearizability checker may take before answering 'unknown'",
}


def _add_run_options(p: argparse.ArgumentParser) -> None:
    default = RunOptions()
    for f in fields(RunOptions):
        if f.name in ("bugs", "schedule_file", "out"):
            continue
        value = getattr(default, f.name)
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_parse_bool if isinstance(value, bool) else type(value),
            default=None,
            metavar=f.name.upper() if not isinstance(value, str) else "SPEC" if ":" in value else "NAME",
            help=f"{HELP[f.name]} (default {value})",
        )
    p.add_argument(
        "--bug",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on a teaching bug of the core (repeatable); '--bug list' names them",
    )
    p.add_argument("--schedule", metavar="FILE", help="inject the faults of this schedule.json instead of drawing them")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "on", "1"):
        return True
    if text.lower() in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _options(args: argparse.Namespace, base: RunOptions | None = None) -> RunOptions:
    base = base or RunOptions()
    changes: dict[str, Any] = {}
    for f in fields(RunOptions):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("bugs",):
            changes[f.name] = v
    if args.bug:
        changes["bugs"] = tuple(args.bug)
    if getattr(args, "schedule", None):
        changes["schedule_file"] = args.schedule
    return base.with_(**changes)


def _lists(args: argparse.Namespace) -> bool:
    """Handle '--bug list' and '--nemesis list'; True if something was listed."""
    if "list" in (args.bug or []):
        for b in TeachingBug:
            print(f"{b.value:22} {b.description}")
        return True
    if getattr(args, "nemesis", None) == "list":
        for f in Fault:
            print(f"{f.value:18} {f.description}")
        return True
    return False


# ---------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    if _lists(args):
        return 0
    try:
        opts = _options(args)
    except (ValueError, ScheduleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    return run_and_report(opts, plots=not args.no_plots)


def run_and_report(opts: RunOptions, plots: bool = True) -> int:
    from sim.report import render_summary, write_outputs
    from sim.run import schedule_for, simulate

    out = Path(opts.out or f"sim-out/seed-{opts.seed}")
    opts = opts.with_(out=str(out))
    print(opts.banner(), flush=True)
    events = schedule_for(opts)
    print(f"fault schedule ({len(events)} events" + (f", from {opts.schedule_file}" if opts.schedule_file else "")
          + "):")
    for ev in events:
        print("  " + ev.describe())
    result = simulate(opts, events)
    print("faults as injected:")
    for line in result.summary["fault_log"]:
        print("  " + line)
    paths = write_outputs(result, out, plots=plots)
    print(render_summary(result, paths))
    return 0 if result.ok else 1


# -------------------------------------------------------------------- replay


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        options, _events = read_schedule(Path(args.schedule_json))
        opts = RunOptions.from_json(options)
    except (ScheduleError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    out = args.out or str(Path(args.schedule_json).parent / "replay")
    opts = opts.with_(schedule_file=str(args.schedule_json), out=out)
    return run_and_report(opts, plots=not args.no_plots)


# --------------------------------------------------------------------- sweep


def _sweep_one(opts: RunOptions) -> dict[str, Any]:
    from sim.report import write_outputs
    from sim.run import simulate

    try:
        result = simulate(opts)
    except Exception as e:  # a crash of the simulator itself is a failure of this seed, reported as such
        return {"seed": opts.seed, "workload": opts.workload, "ok": False,
                "failures": [f"simulator crashed: {type(e).__name__}: {e}"],
                "replay": opts.replay_command(), "wall": 0.0, "sim": 0.0, "history": None}
    history = None
    if not result.ok and opts.out:
        paths = write_outputs(result, Path(opts.out), plots=False)
        history = str(paths["history"])
    s = result.summary
    return {"seed": opts.seed, "workload": opts.workload, "ok": result.ok, "failures": s["failures"],
            "replay": s["replay"],
            "wall": s["wall_seconds"], "sim": s["sim_seconds"], "history": history}


def cmd_sweep(args: argparse.Namespace) -> int:
    if _lists(args):
        return 0
    try:
        base = _options(args)
    except (ValueError, ScheduleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    first = base.seed if args.seed is not None else 1
    seeds = range(first, first + args.seeds)
    out_root = Path(args.out) if args.out else None
    from sim.workloads import WORKLOADS

    workloads = sorted(WORKLOADS) if base.workload == "all" else [base.workload]
    runs = [
        base.with_(seed=s, workload=w, out=str(out_root / f"{w}-seed-{s}") if out_root else "")
        for s in seeds
        for w in workloads
    ]
    print(base.with_(seed=first).banner().replace(f"seed={first}", f"seeds={first}..{first + args.seeds - 1}"))
    started = time.perf_counter()
    results = sweep(runs, jobs=args.jobs, progress=not args.no_progress)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r["ok"]]
    wall = sum(r["wall"] for r in results)
    sim_s = sum(r["sim"] for r in results)
    print(f"\n{len(results)} runs ({args.seeds} seeds x {len(workloads)} workloads): {len(results) - len(failed)} "
          f"passed, {len(failed)} failed")
    print(f"{sim_s:g} simulated s in {elapsed:.1f} wall s on {args.jobs} job(s), checks included: "
          f"{sim_s / elapsed:.0f} simulated s per wall s ({wall:.1f} s of it simulating, summed over runs)")
    if len(workloads) > 1:
        print(f"\n{'workload':10} {'runs':>5} {'failed':>6}")
        for w in workloads:
            mine = [r for r in results if r["workload"] == w]
            print(f"{w:10} {len(mine):>5} {sum(not r['ok'] for r in mine):>6}")
    if failed:
        print(f"\n{'seed':>6}  {'workload':10} {'failure':60}  replay")
        for r in failed:
            reason = r["failures"][0] if r["failures"] else "?"
            print(f"{r['seed']:>6}  {r['workload']:10} {reason[:60]:60}  {r['replay']}")
            if r["history"]:
                print(f"{'':>6}  history: {r['history']}")
    return 1 if failed else 0


def sweep(runs: list[RunOptions], jobs: int = 1, progress: bool = True) -> list[dict[str, Any]]:
    """Run every option set, in `jobs` processes, with a tqdm progress bar; results in seed order."""
    from tqdm import tqdm

    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(runs), unit="seed", disable=not progress, file=sys.stderr)
    failures = 0
    if jobs <= 1:
        for o in runs:
            r = _sweep_one(o)
            results.append(r)
            failures += not r["ok"]
            bar.update(1)
            bar.set_postfix(failed=failures)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(jobs) as pool:
            for r in pool.imap_unordered(_sweep_one, runs):
                results.append(r)
                failures += not r["ok"]
                bar.update(1)
                bar.set_postfix(failed=failures)
    bar.close()
    return sorted(results, key=lambda r: (r["seed"], r["workload"]))


# --------------------------------------------------------------------- bench

BENCH = RunOptions(seed=1, nodes=5, clients=10, rate=100.0, nemesis="partition,kill", duration=50.0, quiet=10.0)


def cmd_bench(args: argparse.Namespace) -> int:
    from sim.run import simulate

    print("bench: 5 members, 10 clients, 100 ops/s, nemesis partition,kill, 60 simulated seconds "
          "(50 s of faults + 10 s quiet); simulation only (the linearizability check is timed apart)")
    if args.profile:
        from sim.profiling import profile, render

        opts = BENCH.with_(seed=args.seed)
        print(f"profiling seed {opts.seed} (cProfile; the shares are the figure, not the seconds)")
        print(render(profile(lambda: simulate(opts, linearizability=not args.skip_check))))
        return 0
    rates, event_rates = [], []
    ok = True
    for i in range(args.repeat):
        opts = BENCH.with_(seed=args.seed + i)
        t0 = time.perf_counter()
        r = simulate(opts, linearizability=not args.skip_check)
        s = r.summary
        rates.append(s["sim_seconds_per_wall_second"])
        event_rates.append(s["events_per_wall_second"])
        ok = ok and r.ok
        print(f"seed {opts.seed}: {s['sim_seconds']:g} sim s in {s['wall_seconds']:.2f} wall s = "
              f"{s['sim_seconds_per_wall_second']:.1f} sim s/wall s, {s['events']} events = "
              f"{s['events_per_wall_second']:.0f} events/wall s; {s['ops']['total']} ops; "
              f"check {s['check_seconds']:.2f}s; total {time.perf_counter() - t0:.2f}s; "
              f"{'PASS' if r.ok else 'FAIL'}")
    rates.sort()
    event_rates.sort()
    print(f"median: {rates[len(rates) // 2]:.1f} simulated s per wall s, "
          f"{event_rates[len(event_rates) // 2]:.0f} simulated events per wall s")
    return 0 if ok else 1


# ------------------------------------------------------------------- parsers


def add_run(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run one simulation and check it",
        description="Run one seeded simulation: a fault phase with invariants checked throughout, a quiet "
        "liveness phase, then linearizability. Prints a summary and writes history.jsonl, summary.json, "
        "schedule.json, timeline.png and latency.png to --out. Exit 0 iff every check passed.",
    )
    _add_run_options(p)
    p.add_argument("--out", metavar="DIR", help="output directory (default sim-out/seed-N)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")
    p.set_defaults(run=cmd_run)


def add_sweep(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run many seeds in parallel and list the failures",
        description="Run --seeds consecutive seeds (from --seed, default 1) with the same options in --jobs "
        "processes; print a table of the failing seeds with the exact command that replays each.",
    )
    _add_run_options(p)
    p.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: CPU count)")
    p.add_argument("--out", metavar="DIR", help="write each failing run's files to DIR/seed-N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_sweep)


def add_replay(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="rerun a run from its schedule.json",
        description="Rerun the run recorded in a schedule.json (its options and its fault events).",
    )
    p.add_argument("schedule_json", metavar="SCHEDULE_JSON", help="a schedule.json written by sim run")
    p.add_argument("--out", metavar="DIR", help="output directory (default: replay/ next to the schedule)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(run=cmd_replay)


def add_bench(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure simulator speed on a fixed scenario",
        description="A fixed scenario (5 members, 10 clients, 100 ops/s, partition+kill nemesis, 60 simulated "
        "seconds); reports simulated seconds and simulated events per wall second.",
    )
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--repeat", type=int, default=3, help="runs, with consecutive seeds (default 3)")
    p.add_argument("--skip-check", action="store_true", help="skip the linearizability check")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, run --seed once under cProfile and print where the time goes, "
                   "by layer (kv.raft, the rest of kv, sim, simpy, the standard library) and by function")
    p.set_defaults(run=cmd_bench)


def add_parsers(subparsers: Any) -> None:
    """All four subcommands (sim/__main__.py registers them one by one)."""
    for add in (add_run, add_sweep, add_replay, add_bench):
        add(subparsers)


def main(argv: list[str] | None = None) -> int:
    """``python -m sim`` with every registered subcommand (this module's included)."""
    from sim.__main__ import main as sim_main

    return sim_main(argv)


if __name__ == "__main__":
    sys.exit(main())
